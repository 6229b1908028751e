"""The gateway: API keys with scopes, who may call what, and rate limits."""
