"""What a trace says: per-process counts, divergences, and the final layout explained."""

from __future__ import annotations

from typing import Any

from vmasim.trace.mirror import Image


def final_layout(image: Image) -> dict[str, Any]:
    """The final layout of ``image``: VMA count (filled in properly later)."""
    return {"vmas": len(image.mm.vmas)}
