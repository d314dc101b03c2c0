"""Ingest: every received syslog frame, from any source, stored through one batch writer."""
