"""Typed, strict configuration: the schemas (``schema``), their loading (``loading``), the command registry."""
