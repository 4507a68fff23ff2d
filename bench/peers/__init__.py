"""Peer implementations the benchmarks compare against (same routes, same SQL)."""
