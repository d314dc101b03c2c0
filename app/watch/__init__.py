"""Continuous reconciliation in `serve`: after each MN pull, alerts on records it lacks or lost."""
