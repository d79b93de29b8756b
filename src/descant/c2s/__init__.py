"""Client-to-server streams (RFC 6120)."""
