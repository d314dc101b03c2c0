"""API tokens with scopes, and the request dependencies that check them."""
