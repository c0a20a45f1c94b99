"""Fuzzing categories: which ops each ``--category`` exercises, from the op definitions' families.

Every category also uses the core ops (mmap, munmap, mprotect, touch, files,
pad) to build the layout it then works on; ``all`` uses every op.
"""

from __future__ import annotations

from vmasim.program.ops import OP_DEFS


def _family(name: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(cls.op_name() for cls in OP_DEFS if cls.family == name))


#: The ops of each category's own family; ``all`` is every op.
CATEGORY_OPS: dict[str, tuple[str, ...]] = {
    "core": _family("core"),
    "attrs": _family("attrs"),
    "lifecycle": _family("lifecycle"),
}
CATEGORY_OPS["all"] = tuple(dict.fromkeys(cls.op_name() for cls in OP_DEFS))
CATEGORIES = tuple(CATEGORY_OPS)


def plan_category(category: str) -> frozenset[str]:
    """The ops programs of ``category`` are generated from: its own plus the core ones."""
    if category not in CATEGORY_OPS:
        raise ValueError(f"unknown category {category!r} (known: {', '.join(CATEGORIES)})")
    return frozenset(CATEGORY_OPS[category]) | frozenset(CATEGORY_OPS["core"])
