"""Reconciliation: syslog CDRs against the Management Node's records, and the restore gaps."""
