"""Magic Box from other tools: the HTTP API under /api/ (personal tokens, OpenAPI schema)."""
