"""Adapters: every conversation with the outside world (Postgres, Redis, providers)."""
