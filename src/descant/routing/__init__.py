"""Stanza routing: the session registry and the router (RFC 6120 §10, RFC 6121 §8)."""
