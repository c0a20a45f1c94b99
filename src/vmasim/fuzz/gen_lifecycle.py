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
    nudge,
    size_text,
)
from vmasim.program.names import SHMAT_FLAGS


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
        """An sbrk of a few pages either way (rarely something large or unaligned), often naming the old break."""
        inc = self.rng.choice((1, 1, 2, 4, 8, -1, -2, 0)) * PAGE
        if self.chance(0.05):
            inc = self.rng.choice((-(1 << 40), 100, 1 << 20))
        if "increment" in want:
            inc = edge_value(want["increment"][4:], PAGE, self.rng)
        doc: Doc = {"op": "sbrk", "increment": inc}
        # Only a break that likely moves is named: a failed sbrk binds -1, from which no heap address follows.
        if self.chance(0.5) and 0 <= st.brk + inc <= 1 << 30:
            name = self.uid("b")
            doc["as"] = name
            st.heap[name] = st.brk
        self.move_break(st, st.brk + inc)
        return [doc]

    def move_break(self, st: GenState, new: int) -> None:
        """The picture's break after a change to ``new`` (bytes above the initial break) that likely works."""
        if 0 <= new <= 1 << 30:
            st.brk = new

    def op_brk(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A brk: a query (0), or a break a few pages around the present one (named through the heap's names).

        Without a name in the heap yet, a query binds one first.
        """
        rng = self.rng
        pre: list[Doc] = []
        if not st.heap:
            name = self.uid("b")
            pre.append({"op": "brk", "addr": 0, "as": name})
            st.heap[name] = st.brk
        r = rng.random()
        new: int | None = None
        if r < 0.12:
            addr: Any = 0
        elif r < 0.16:
            addr = self.at(st, rng.randrange(st.region))  # far above the heap, in the window
        else:
            new = max(0, st.brk + rng.choice((1, 1, 2, 4, 8, 16, -1, -1, -2, -4, 0)) * PAGE)
            if self.chance(0.1):
                new = rng.choice((0, new + 100, max(0, new - PAGE + 1)))
            addr = self.heap_at(st, new)
            if self.chance(0.04):
                addr = nudge(self.heap_at(st, 0), -PAGE)
                new = None  # below the initial break: only a query
        doc: Doc = {"op": "brk", "addr": addr}
        if "addr" in want:
            edge = want["addr"][4:]
            doc["addr"] = edge_value(edge, 0, rng) & ~(PAGE - 1) if edge != "-1" else -1
            new = None
        if self.chance(0.5):
            name = self.uid("b")
            doc["as"] = name
            st.heap[name] = st.brk if new is None else new
        if new is not None:
            self.move_break(st, new)
        return [*pre, doc]

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


    def op_exec(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """An exec, then a mapping or two to work on: the new address space has none of the old names."""
        st.new_image()
        out: list[Doc] = [{"op": "exec"}]
        for _ in range(self.rng.choice((0, 1, 1, 2))):
            out += self.mmap_fixed(st, {}, prelude=True)
        return out

    # -- System V shared memory ---------------------------------------------------------------------------
    def op_shmget(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A segment of a few pages (sometimes of an unaligned size, empty, or large)."""
        rng = self.rng
        pages = rng.randint(1, min(16, st.region))
        size: Any = size_text(pages * PAGE)
        r = rng.random()
        if r < 0.08:
            size = pages * PAGE - rng.choice((1, 100, PAGE - 1))  # the last page is partly past the end
        elif r < 0.1:
            size = 0
        elif r < 0.13:
            pages = rng.choice((512, 1024))
            size = size_text(pages * PAGE)
        name = self.uid("s")
        doc: Doc = {"op": "shmget", "name": name, "size": size}
        if self.chance(0.2):
            doc["flags"] = ["noreserve"]
        if "size" in want:
            doc["size"] = edge_value(want["size"][4:], pages * PAGE, rng)
            pages = 1 << 20  # large (or refused): never attached with remap
        elif want:
            self.fill(self.by_label["shmget"], doc, want)
        st.objects[name] = "shm"
        st.shms[name] = pages
        return [doc]

    def op_shmat(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """An attachment: where the kernel chooses, at a region address (free or taken), or unaligned.

        SHM_REMAP (which replaces what is there, like MAP_FIXED) only where
        the whole segment lies in the region, never over the runner's walls.
        """
        rng = self.rng
        pre: list[Doc] = []
        if not st.shms:
            pre = self.op_shmget(st, {}, depth)
            if not st.shms:
                return pre
        shm = rng.choice(sorted(st.shms))
        pages = st.shms[shm]
        doc: Doc = {"op": "shmat", "shm": shm}
        start: int | None = None
        if st.walls and self.chance(0.35):
            doc["addr"] = None
        else:
            free = self.free_range(st, min(pages, st.region))
            start = free if free is not None and self.chance(0.6) else rng.randrange(st.region)
            doc["addr"] = self.at(st, start)
            if self.chance(0.08):
                doc["addr"] = nudge(doc["addr"], rng.choice((0x10, 0x800)))  # rounded down with rnd, else EINVAL
        fits = start is not None and start + pages <= st.region
        flags: list[str] = []
        for flag, p in (("rdonly", 0.2), ("exec", 0.1), ("rnd", 0.15), ("remap", 0.3 if fits else 0.0)):
            if self.chance(p):
                flags.append(flag)
        if flags:
            doc["flags"] = flags
        for name, item in want.items():
            if name == "addr":
                edge = item[4:]
                doc["addr"] = edge_value(edge, 0, rng) & ~(PAGE - 1) if edge != "-1" else -1
                start, fits = None, False
            elif name == "flags":
                doc["flags"] = self.value(self.by_label["shmat"].kinds()["flags"], item, doc.get("flags"))
        if self._remaps(doc) and not fits:
            # Anywhere but the region SHM_REMAP could replace the runner's walls; at null it is refused.
            if pages <= st.region and "addr" not in want:
                start = rng.randrange(st.region - pages + 1)
                doc["addr"] = self.at(st, start)
            else:
                doc["addr"], start = None, None
        name = self.uid("a")
        if self.chance(0.7):
            doc["as"] = name
            st.attached.append(name)
            if start is not None:
                st.bound[name] = start
            elif doc["addr"] is None:
                st.floating.append(Floating(name, min(pages, 64)))
        elif isinstance(doc["addr"], str):
            st.attached.append(doc["addr"])
        if start is not None:
            self.mark(st, start, min(pages, st.region - start), True)
        return [*pre, doc]

    def _remaps(self, doc: Doc) -> bool:
        try:
            bits = int(self.by_label["shmat"].kinds()["flags"].parse(doc.get("flags", 0)) or 0)
        except ValueError:
            return False
        return bool(bits & SHMAT_FLAGS["remap"])

    def op_shmdt(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A detach at an attachment's start, inside one, or where there is none."""
        rng = self.rng
        pre: list[Doc] = []
        if not st.attached and self.chance(0.7) and self.can("shmat"):
            pre = self.op_shmat(st, {}, depth)
        r = rng.random()
        if st.attached and r < 0.6:
            addr: Any = rng.choice(st.attached)
        elif st.attached and r < 0.75:
            addr = nudge(rng.choice(st.attached), rng.choice((PAGE, 2 * PAGE, 0x10)))
        else:
            addr = self.at(st, rng.randrange(st.region))
        doc: Doc = {"op": "shmdt", "addr": addr}
        if "addr" in want:
            edge = want["addr"][4:]
            doc["addr"] = edge_value(edge, 0, rng) & ~(PAGE - 1) if edge != "-1" else -1
        return [*pre, doc]
