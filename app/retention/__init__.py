"""Retention: what is pruned when, within the billing horizon, and space handed back."""
