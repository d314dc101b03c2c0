"""asyncio syslog servers (TCP, TLS, UDP): they only cut frames and hand them to ingest."""
