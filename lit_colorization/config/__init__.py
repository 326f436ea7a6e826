"""Typed, strict configuration: the schemas (``schema``), their loading (``loading``), the command registry."""

__all__ = ["commands", "loading", "schema"]
