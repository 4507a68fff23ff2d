"""Domain actors: slot booker, payment, notifier, ... (one per domain)."""
