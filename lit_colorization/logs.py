"""Process-wide log helpers small enough for the lowest layer: every package may use them."""

from __future__ import annotations

import logging

log = logging.getLogger("lit_colorization")

_said: set[str] = set()


def say_once(message: str) -> None:
    """Log ``message`` at INFO level the first time this process says it."""
    if message not in _said:
        _said.add(message)
        log.info(message)
