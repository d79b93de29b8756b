"""Message Archive Management for accounts (XEP-0313); see module.py."""

from descant.features.mam.module import MamModule

__all__ = ["MamModule"]
