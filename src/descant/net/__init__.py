"""Transports: listeners, connections and TLS."""
