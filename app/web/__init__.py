"""The browser pages: a token login form and one overview for billing and operations."""
