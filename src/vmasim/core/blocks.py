"""The search both block layouts share (the VMA store's and the range sets'): which block holds an address.

Both keep sorted runs in short lists ("blocks") and the first key of each
block in ``firsts``; a lookup bisects ``firsts`` and then one block.  The
lookups of one system call mostly land in one block, so each layout keeps
the block its last lookup found and tries it first: at 65,000 VMAs that
skips the bisect over a thousand or more block keys, the part of a lookup
that misses the CPU caches.
"""

from __future__ import annotations

from bisect import bisect_right


def find_block(firsts: list[int], hint: int, key: int) -> int:
    """``bisect_right(firsts, key) - 1`` (the last block whose first key is at most ``key``; -1: none),
    answered from block ``hint`` when it is that block."""
    if hint < len(firsts) and firsts[hint] <= key and (hint + 1 == len(firsts) or key < firsts[hint + 1]):
        return hint
    if not firsts or key < firsts[0]:
        return -1  # below every block: where hint-less mmaps land under packed VMAs, so worth no bisect
    return bisect_right(firsts, key) - 1
