"""XML for XMPP: restricted incremental parsing and stream-aware serialization."""
