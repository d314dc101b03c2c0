"""The cdrecon service: receiver, ingest, CDR assembly, reconciliation, export, API."""
