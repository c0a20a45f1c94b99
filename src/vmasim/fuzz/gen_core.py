"""The program generator's builders for the core ops: mappings (fixed, of files, hint-less), unmapping,
protection, access, and files and their descriptors."""

from __future__ import annotations

from vmasim import constants as C
from vmasim.fuzz.gen_base import GeneratorBase
from vmasim.fuzz.gen_state import (
    MMAP_FLAGS_KIND,
    PAGE,
    PROTS_USUAL,
    Doc,
    FileInfo,
    Floating,
    GenState,
    edge_value,
    size_text,
)
from vmasim.program.names import PWRITE_MAX
from vmasim.program.ops import Mmap
from vmasim.program.values import MASK64


class CoreOps(GeneratorBase):
    """Builders of the core family (every category uses them to lay out the region it works on)."""

    def op_memfd(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A memfd."""
        return self.new_file(st, want, "memfd")

    def op_file(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A regular file."""
        return self.new_file(st, want, "file")

    def anon_flags(self, fixed: str | None) -> list[str]:
        """mmap flags for anonymous memory: private or shared, sometimes with an extra flag."""
        rng = self.rng
        flags = ["shared" if self.chance(0.18) else "private", "anonymous"]
        if fixed:
            flags.append(fixed)
        for flag, p in (("noreserve", 0.15), ("populate", 0.08), ("growsdown", 0.06), ("stack", 0.06),
                        ("locked", 0.02), ("nonblock", 0.02)):
            if self.chance(p):
                flags.append(flag)
        if self.chance(0.03):
            flags[0] = rng.choice(("shared_validate", "droppable"))
        return flags

    def _complete_mmap_flags(self, forced: list[str], base: list[str]) -> list[str]:
        # The wanted names, made into a call that can succeed: a mapping type, the anonymous flag and
        # the fixed-ness of the base call are added unless the wanted names bring their own.
        if not forced or self.chance(0.15):
            return forced  # sometimes just as wanted, however incomplete
        out = list(forced)
        types = {"private", "shared", "shared_validate", "droppable"}
        if not types & set(out):
            out += [n for n in base if n in types]
        if "anonymous" in base and "anonymous" not in out:
            out.append("anonymous")
        if not {"fixed", "fixed_noreplace"} & set(out):
            out += [n for n in base if n in ("fixed", "fixed_noreplace")]
        return out

    def _mmap_want(self, op: Doc, want: dict[str, str], st: GenState) -> Doc:
        kinds = Mmap.kinds()
        for name, item in want.items():
            if name == "flags" and not item.startswith("raw:"):
                forced = [] if item == "[]" else item.split("|")
                op["flags"] = self._complete_mmap_flags(forced, op["flags"])
            elif name == "length" and item.startswith("raw:"):
                edge = item[4:]
                if edge in ("2**31", "2**32+k") and op.get("addr") is not None:
                    # A FIXED mapping this large ends where it would have ended, clear of the walls.
                    _addr, op["length"], _ = self.target(st, edge=edge)
                    op["addr"] = _addr
                else:
                    op["length"] = edge_value(edge, 0, self.rng)
            elif name == "offset" and item.startswith("raw:"):
                op["offset"] = edge_value(item[4:], 0, self.rng)
                if item == "raw:2**63+k" and self.chance(0.5):
                    op["offset"] = MASK64 & ~(PAGE - 1)  # the offset plus the length wraps around
            elif name in kinds:
                op[name] = self.value(kinds[name], item, op.get(name))
        return op

    def op_mmap(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """An mmap: FIXED-style next to or over the region's mappings, of a file, or without a hint."""
        if "fd" in want or "offset" in want or (not ({"addr"} & set(want)) and self.chance(0.25)):
            return self.mmap_file(st, want)
        if st.walls and ("addr" in want or self.chance(0.2)):
            return self.mmap_hintless(st, want)
        return self.mmap_fixed(st, want)

    def mmap_fixed(self, st: GenState, want: dict[str, str], prelude: bool = False) -> list[Doc]:
        """A FIXED or FIXED_NOREPLACE anonymous mmap next to or over existing mappings."""
        n = self.rng.randint(1, min(8, st.region))
        start = self.free_range(st, n)
        if start is None or (not prelude and self.chance(0.3)):
            start, n = self.pick_range(st, 8)
            fixed = "fixed" if self.chance(0.7) else "fixed_noreplace"
        else:
            fixed = "fixed_noreplace" if self.chance(0.8) else "fixed"
        op: Doc = {"op": "mmap", "addr": self.at(st, start), "length": size_text(n * PAGE) if self.chance(0.98) else 0,
                   "prot": self.rng.choice(PROTS_USUAL), "flags": self.anon_flags(fixed)}
        if self.chance(0.4):
            name = self.uid("m")
            op["as"] = name
            st.bound[name] = start
        self.mark(st, start, n, True)
        return [self._mmap_want(op, want, st) if want else self.fill(Mmap, op, {})]

    def mmap_file(self, st: GenState, want: dict[str, str]) -> list[Doc]:
        """A file mapping whose offset continues a neighbour's (so they may merge) or does not."""
        out: list[Doc] = []
        objs = [n for n, k in st.objects.items() if k == "userfaultfd"]
        if "fd" in want and not objs and self.can("userfaultfd"):
            # Mapping something that cannot be mapped: a userfaultfd (read-only, without mmap).
            out += self.build("userfaultfd", st, {}, 0)
            objs = [n for n, k in st.objects.items() if k == "userfaultfd"]
        if not st.files or self.chance(0.12):
            out += self.new_file(st)
        if not st.files and not objs:
            return out + self.mmap_fixed(st, {k: v for k, v in want.items() if k != "offset"})
        start, n = self.pick_range(st, 8)
        shared = self.chance(0.55)
        flags = ["shared" if shared else "private", "fixed" if self.chance(0.4) else "fixed_noreplace"]
        if self.chance(0.1):
            flags.append("populate")
        if self.chance(0.05):
            flags.append("noreserve")
        op: Doc = {"op": "mmap", "addr": self.at(st, start), "length": size_text(n * PAGE),
                   "prot": self.rng.choice(("rw", "rw", "r", "r", "none", "rx")), "flags": flags}
        if objs and ("fd" in want or not st.files or self.chance(0.08)):
            op["fd"] = self.rng.choice(objs)
            op["offset"] = 0
        else:
            f = self.rng.choice(st.files)
            # Usually contiguous with any mapping of f laid out the same way (so they may merge).
            fpage = max(0, f.base + start) if self.chance(0.65) else self.rng.randint(0, f.pages + 2)
            op["fd"] = f.name
            op["offset"] = size_text(fpage * PAGE) if fpage else 0
        if self.chance(0.3):
            name = self.uid("m")
            op["as"] = name
            st.bound[name] = start
        self.mark(st, start, n, True)
        want = {k: v for k, v in want.items() if k != "fd"}
        out.append(self._mmap_want(op, want, st) if want else self.fill(Mmap, op, {}))
        return out

    def mmap_hintless(self, st: GenState, want: dict[str, str]) -> list[Doc]:
        """An mmap without a hint (placed top-down from the window's end), or with one that may be taken."""
        rng = self.rng
        nbytes = rng.choice((2, 2, 4, 6)) << 20 if self.chance(0.15) else rng.randint(1, 16) * PAGE
        name = self.uid("h")
        op: Doc = {"op": "mmap", "addr": None, "length": size_text(nbytes), "prot": rng.choice(PROTS_USUAL)}
        if st.files and self.chance(0.25):
            f = rng.choice(st.files)
            op["flags"] = ["shared" if self.chance(0.5) else "private"]
            op["fd"] = f.name
            op["offset"] = 0
        else:
            op["flags"] = self.anon_flags(None)
        if self.chance(0.1):
            op["addr"] = self.at(st, rng.randrange(st.region), rng.choice((0, 0, 0x123)))
        addr_item = want.get("addr", "")
        if addr_item.startswith("raw:"):
            edge = addr_item[4:]
            # An address far from the window: low memory (2**31, 2**32+k), non-canonical, or all ones.
            op["addr"] = edge_value(edge, 0, rng) & ~(PAGE - 1) if edge != "-1" else edge_value(edge, 0, rng)
            if self.chance(0.5):
                op["flags"] = [*op["flags"], rng.choice(("fixed", "fixed_noreplace"))]
        op["as"] = name
        st.floating.append(Floating(name, max(1, nbytes // PAGE)))
        want = {k: v for k, v in want.items() if k != "addr"}
        op = self._mmap_want(op, want, st) if want else self.fill(Mmap, op, {})
        try:
            bits = int(MMAP_FLAGS_KIND.parse(op.get("flags")))
        except ValueError:
            bits = 0
        at_zero = op.get("addr") is None and bits & (C.MAP_FIXED | C.MAP_FIXED_NOREPLACE)
        if at_zero and (not isinstance(op["length"], str) or not op["length"].endswith("K")):
            # A fixed mapping at address 0 (which privilege allows) must stay below the runner's
            # executable at 4 MiB: over it, the runner's process dies and the program is skipped.
            op["length"] = size_text(PAGE * self.rng.randint(1, 16))
        return [op]

    def op_munmap(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A munmap (its range, sometimes invalid)."""
        ops = self.generic(self.by_label["munmap"], st, want)
        self._unmark(st, ops[-1])
        return ops

    def _unmark(self, st: GenState, op: Doc) -> None:
        # The generator's picture of the region after an unmap of a region range.
        addr = op.get("addr")
        length = op.get("length")
        if isinstance(addr, str) and addr.startswith("W") and isinstance(length, str) and length.endswith("K"):
            off = int(addr[2:], 16) if len(addr) > 1 and addr[1] == "+" else 0 if addr == "W" else None
            if off is not None and off >= st.base_off:
                start = (off - st.base_off) // PAGE
                self.mark(st, start, int(length[:-1]) // 4, False)

    def op_mprotect(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """An mprotect across nearby boundaries (sometimes invalid)."""
        ops = self.generic(self.by_label["mprotect"], st, want)
        op = ops[-1]
        if "prot" not in want:
            op["prot"] = self.rng.choice(PROTS_USUAL)
        if "prot_flags" not in want:
            op.pop("prot_flags", None)
            if self.chance(0.04):
                op["prot_flags"] = ["growsdown"]
        return ops

    def op_touch(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A read or write access of a range."""
        if not want and "missing" in st.hazards and self.chance(0.85):
            return []  # a MISSING fault would wait for a handler (the runner stops it): keep rare
        ops = self.generic(self.by_label["touch"], st, want)
        if "write" not in want:
            ops[-1].pop("write", None)
            if self.chance(0.35):
                ops[-1]["write"] = False
        return ops


    def op_close(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A close of a file or a userfaultfd."""
        ops = self.generic(self.by_label["close"], st, want)
        closed = ops[-1].get("fd")
        if ops[-1].get("op") == "close" and isinstance(closed, str):
            st.uffds.pop(closed, None)
            st.files = [f for f in st.files if f.name != closed]
        return ops

    def op_ftruncate(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """An ftruncate of a file to a size around the region's."""
        pre = [] if st.files else self.new_file(st)
        if not st.files:
            return pre
        f = self.rng.choice(st.files)
        f.pages = self.rng.randint(0, st.region + 4)
        doc: Doc = {"op": "ftruncate", "fd": f.name, "size": size_text(f.pages * PAGE) if f.pages else 0}
        if "size" in want:
            doc["size"] = edge_value(want["size"][4:], f.pages * PAGE, self.rng)
            f.pages = 1 << 20
        return [*pre, doc]

    def op_open(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A second open of a file, read-only or read-write."""
        if not st.files:
            return self.new_file(st)
        f = self.rng.choice(st.files)
        mode = want.get("mode") or ("rw" if self.chance(0.3) else "r")
        info = FileInfo(self.uid("o"), f.pages, f.kind, mode == "rw", f.base)
        st.files.append(info)
        st.objects[info.name] = "file"
        return [{"op": "open", "name": info.name, "of": f.name, "mode": mode}]

    def op_dup(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A dup of a file (or a userfaultfd)."""
        if st.uffds and self.chance(0.15):
            u = self.rng.choice(sorted(st.uffds))
            name = self.uid("d")
            st.uffds[name] = st.uffds[u]
            st.objects[name] = "userfaultfd"
            return [{"op": "dup", "name": name, "of": u}]
        if not st.files:
            return self.new_file(st)
        f = self.rng.choice(st.files)
        info = FileInfo(self.uid("d"), f.pages, f.kind, f.writable, f.base)
        st.files.append(info)
        st.objects[info.name] = "file"
        return [{"op": "dup", "name": info.name, "of": f.name}]


    def op_pwrite(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A pwrite of a few bytes around a file's end (growing it under its mappings), or inside it."""
        rng = self.rng
        pre = [] if st.files else self.new_file(st)
        uffds = [n for n, k in st.objects.items() if k == "userfaultfd"]
        if not st.files and not uffds:
            return pre
        if uffds and (not st.files or self.chance(0.04)):
            # Not a file at all: the kernel refuses before writing.
            return [*pre, {"op": "pwrite", "fd": rng.choice(uffds), "offset": 0, "length": PAGE}]
        f = rng.choice(st.files)
        end = f.pages * PAGE
        offset = max(0, rng.choice((end, end, end - 100, end + 1, end + PAGE, end + 3 * PAGE, 0,
                                    rng.randrange(max(1, f.pages)) * PAGE, end + rng.randint(1, 16) * PAGE)))
        length = rng.choice((1, 100, PAGE, PAGE, 2 * PAGE, 3 * PAGE + 5, 0, PWRITE_MAX))
        doc: Doc = {"op": "pwrite", "fd": f.name, "offset": size_text(offset) or 0, "length": length}
        if "offset" in want:
            doc["offset"] = edge_value(want["offset"][4:], offset, rng)
            f.pages = 1 << 20  # far (or refused): the generator stops caring about its end
        elif f.writable and length:
            f.pages = max(f.pages, -(-(offset + length) // PAGE))
        return [*pre, doc]
