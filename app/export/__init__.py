"""Billing export batches: frozen record sets in MN shape, as CSV or JSON lines."""
