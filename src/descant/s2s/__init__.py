"""Server-to-server federation (RFC 6120, XEP-0220 dialback, XEP-0185 keys)."""
