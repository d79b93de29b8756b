"""The XML stream protocol shared by every stream type (c2s, s2s, components)."""
