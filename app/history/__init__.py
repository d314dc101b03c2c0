"""Management Node history: import from files, pull over its REST API, store as received."""
