"""Descant: an XMPP server."""

__version__ = "0.1.0"
