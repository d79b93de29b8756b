"""Descant's load benchmark: the same scenarios against Descant and Prosody (README.md)."""
