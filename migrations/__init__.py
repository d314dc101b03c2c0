"""Alembic migrations for the cdrecon schema."""
