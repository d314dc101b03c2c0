"""Database access: engine and session, table definitions, migrations."""
