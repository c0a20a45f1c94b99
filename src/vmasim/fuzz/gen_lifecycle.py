"""The program generator's builders for the lifecycle ops: mremap, the heap, fork, exec and System V
shared memory."""

from __future__ import annotations

from typing import Any

from vmasim.fuzz.gen_base import GeneratorBase
from vmasim.fuzz.gen_state import (
    MAX_DEPTH,
    PAGE,
    Doc,
    Floating,
    GenState,
    Item,
    edge_value,
    size_text,
)


class LifecycleOps(GeneratorBase):
    """Builders of the lifecycle family."""

    def op_mremap(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """An mremap: shrink, grow, move (to a hint, a fixed place, or leaving the source mapped)."""
        rng = self.rng
        if not want and "remap" in st.hazards and self.chance(0.85):
            return []
        old_item = want.get("old_length", "")
        addr, old, start = self.target(st, 8, edge=old_item[4:] if old_item.startswith("raw:") else None)
        n = 0 if not isinstance(old, str) else int(old[:-1]) // 4 if old.endswith("K") else 0
        new_n = max(0, n + rng.choice((-2, -1, 0, 0, 1, 2, 4)))
        op: Doc = {"op": "mremap", "addr": addr, "old_length": old,
                   "new_length": size_text(new_n * PAGE) if new_n else 0}
        r = rng.random()
        if r < 0.2:
            pass  # in place
        elif r < 0.4:
            op["flags"] = ["maymove"]
        elif r < 0.65:
            op["flags"] = ["maymove", "fixed"]
        elif r < 0.8:
            op["flags"] = ["maymove", "dontunmap"]
            op["new_length"] = op["old_length"]
        elif r < 0.93:
            op["flags"] = ["maymove", "fixed", "dontunmap"]
            op["new_length"] = op["old_length"]
        else:
            op["flags"] = rng.choice((["fixed"], ["dontunmap"], ["fixed", "dontunmap"]))
        if not st.walls and "maymove" in op.get("flags", []) and "fixed" not in op["flags"]:
            op["flags"] = ["maymove", "fixed"]  # no placement of the kernel's choosing without walls
        flags_item = want.get("flags")
        if flags_item is not None:
            op["flags"] = self.value(self.by_label["mremap"].kinds()["flags"], flags_item, op.get("flags"))
        flags = op.get("flags")
        names: list[Any] = flags if isinstance(flags, list) else []
        if "fixed" in names or "dontunmap" in names or "new_addr" in want:
            # The whole destination stays in the region: MREMAP_FIXED unmaps whatever it lands on,
            # and above a region at the window's top that would be the runner's walls.
            span = max(new_n, 1)
            dst = rng.randrange(max(1, st.region - span + 1))
            op["new_addr"] = self.at(st, dst)
            if "fixed" in names:
                self.mark(st, dst, span, True)
        new_item = want.get("new_length", "")
        if new_item.startswith("raw:"):
            edge = new_item[4:]
            op["new_length"] = edge_value(edge, 0, rng) + (PAGE if edge in ("2**31", "2**32+k") else 0)
            if "new_addr" in op and edge in ("2**31", "2**32+k"):
                # A large fixed destination ends inside the region, clear of the walls.
                op["new_addr"] = hex(st.window_start + st.base_off + st.region * PAGE - op["new_length"])
        addr_item = want.get("new_addr", "")
        if addr_item.startswith("raw:"):
            edge = addr_item[4:]
            op["new_addr"] = edge_value(edge, 0, rng) & ~(PAGE - 1) if edge != "-1" else -1
        a_item = want.get("addr", "")
        if a_item.startswith("raw:"):
            edge = a_item[4:]
            op["addr"] = edge_value(edge, 0, rng) & ~(PAGE - 1) if edge != "-1" else -1
        if start is not None:
            self.mark(st, start, max(n, 1))
        name = self.uid("r")
        op["as"] = name
        st.floating.append(Floating(name, max(new_n, 1)))
        return [op]

    def op_sbrk(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """An sbrk of a few pages either way (rarely something large or unaligned)."""
        inc = self.rng.choice((1, 1, 2, 4, 8, -1, -2, 0)) * PAGE
        if self.chance(0.05):
            inc = self.rng.choice((-(1 << 40), 100, 1 << 20))
        if "increment" in want:
            inc = edge_value(want["increment"][4:], PAGE, self.rng)
        return [{"op": "sbrk", "increment": inc}]

    def op_pad(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """Fill the process with VMAs until a few below max_map_count (only at the start of a process)."""
        return [{"op": "pad", "headroom": self.rng.randint(0, 6)}]

    def op_fork(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A fork whose child runs a short program of its own (forks nest up to three deep)."""
        if depth >= MAX_DEPTH or ("fork" in st.hazards and self.chance(0.85)):
            return []
        # The child works on a copy of the parent's picture; what it binds stays in the child.
        child_state = st.clone()
        focus: list[Item] = []
        if self.focus and self.chance(0.3):
            focus = [self.rng.choice(self.focus)]
        child = self.body(child_state, self.rng.randint(1, 6), depth + 1, focus)
        return [{"op": "fork", "child": child}]

