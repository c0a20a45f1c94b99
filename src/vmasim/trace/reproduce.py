"""Standalone reproducers for divergences (filled in below)."""

from __future__ import annotations

from typing import Any


def attach_reproducers(result: Any) -> None:
    """Give each divergence a program in the JSON format that reproduces it, where one can be built."""
    return None
