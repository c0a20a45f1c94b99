"""The program generator's builders for the attribute ops: advice, locks, memory policy, sealing,
userfaultfd registration, KSM, protection keys and process_madvise."""

from __future__ import annotations

from typing import Any

from vmasim.fuzz.gen_base import GeneratorBase
from vmasim.fuzz.gen_state import (
    EVENT_HAZARDS,
    HARMLESS_ADVICE,
    PAGE,
    PROTS_USUAL,
    Doc,
    Floating,
    GenState,
    edge_value,
    size_text,
)


class AttrOps(GeneratorBase):
    """Builders of the attrs family."""

    def _populates(self, st: GenState, want: dict[str, str]) -> bool:
        """Whether to leave out an op that faults pages in: with a MISSING registration it may wait forever."""
        return not want and "missing" in st.hazards and self.chance(0.85)

    def op_madvise(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A madvise: flag-changing advice more often than the rest."""
        ops = self.generic(self.by_label["madvise"], st, want)
        op = ops[-1]
        if "advice" not in want and any(w.startswith("raw:") for w in want.values()):
            op["advice"] = self.rng.choice(HARMLESS_ADVICE)
        elif op.get("op") == "madvise":
            self.advice(st, want, op)
            if op["advice"] == "collapse" and "addr" not in want and "length" not in want and self.chance(0.6):
                ops[-1:] = self.collapse_aim(st, op)
        return ops

    def collapse_aim(self, st: GenState, op: Doc) -> list[Doc]:
        """Aim a MADV_COLLAPSE at a hint-less mapping of 2 MiB or more (THP-aligned), touched first now and then.

        Ranges in the window are never a whole aligned 2 MiB block, so without
        this a collapse would never find one to collapse.
        """
        out: list[Doc] = []
        big = [f for f in st.floating if f.pages >= 512]
        if not big:
            # A fresh one: private anonymous memory, or shared (shmem).
            size = self.rng.choice((2, 4)) << 20
            flags = [self.rng.choice(("private", "private", "shared")), "anonymous"]
            mapping: Doc = {"op": "mmap", "addr": None, "length": size_text(size), "prot": "rw", "flags": flags,
                            "as": self.uid("h")}
            out.append(mapping)
            big = [Floating(mapping["as"], size // PAGE)]
            st.floating.append(big[0])
        target = self.rng.choice(big)
        if "missing" not in st.hazards and self.chance(0.6):
            out.append({"op": "touch", "addr": target.name, "length": self.rng.choice(("4K", "8K", "2M")),
                        "write": self.chance(0.7)})
        offset = self.rng.choice((0, 0, 0x1000, 0x200000))
        op["addr"] = f"{target.name}+{offset:#x}" if offset else target.name
        op["length"] = self.rng.choice(("4K", "32K", "2M", "2M", "4M"))
        return [*out, op]

    def op_mlock(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """An mlock."""
        return [] if self._populates(st, want) else self.generic(self.by_label["mlock"], st, want)

    def op_mlock2(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """An mlock2, usually with MLOCK_ONFAULT."""
        if self._populates(st, want):
            return []
        ops = self.generic(self.by_label["mlock2"], st, want)
        if "flags" not in want:
            ops[-1]["flags"] = self.rng.choice((["onfault"], ["onfault"], []))
        return ops

    def op_mlockall(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """An mlockall (usually with flags that make sense together)."""
        if self._populates(st, want):
            return []
        flags: Any = self.rng.choice((["current"], ["future"], ["current", "future"], ["future", "onfault"],
                                      ["current", "onfault"]))
        return [self.fill(self.by_label["mlockall"], {"op": "mlockall", "flags": flags}, want)]

    def op_mbind(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """An mbind: nodes where the mode needs them, mode flags and flags now and then."""
        ops = self.generic(self.by_label["mbind"], st, want)
        op = ops[-1]
        mode = op.get("mode")
        if "nodes" in op and isinstance(mode, str) and mode in ("default", "local") and self.chance(0.9):
            del op["nodes"]
        for name in ("mode_flags", "flags"):
            if name not in want and self.chance(0.8):
                op.pop(name, None)
        return ops

    def op_set_mempolicy(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A set_mempolicy."""
        return self.op_mbind_like("set_mempolicy", st, want)

    def op_mbind_like(self, label: str, st: GenState, want: dict[str, str]) -> list[Doc]:
        """A policy op built generically, with nodes only where the mode takes them."""
        ops = self.generic(self.by_label[label], st, want)
        op = ops[-1]
        if op.get("mode") in ("default", "local") and self.chance(0.9):
            op.pop("nodes", None)
        if "mode_flags" not in want and self.chance(0.8):
            op.pop("mode_flags", None)
        return ops

    def op_mseal(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """An mseal (flags 0 unless wanted)."""
        ops = self.generic(self.by_label["mseal"], st, want)
        if "flags" not in want:
            ops[-1].pop("flags", None)
        return ops

    def op_userfaultfd(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A userfaultfd, usually without features (SIGBUS now and then)."""
        name = self.uid("u")
        doc: Doc = {"op": "userfaultfd", "name": name}
        if "features" in want:
            doc = self.fill(self.by_label["userfaultfd"], doc, want)
        elif self.chance(0.3):
            doc["features"] = self.rng.choice((["sigbus"], ["sigbus"], ["event_remap"], ["missing_shmem"],
                                               ["minor_shmem", "sigbus"], ["wp_async"], ["event_unmap"]))
        features = doc.get("features", [])
        names = set(features) if isinstance(features, list) else set()
        st.uffds[name] = 1 if "sigbus" in names else 0
        st.objects[name] = "userfaultfd"
        for feature, hazard in EVENT_HAZARDS.items():
            if feature in names:
                st.hazards.add(hazard)
        return [doc]

    def op_uffd_register(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A registration of a range (opening a userfaultfd first when there is none)."""
        pre: list[Doc] = []
        if not st.uffds and self.can("userfaultfd"):
            pre = self.op_userfaultfd(st, {}, depth)
        ops = self.generic(self.by_label["uffd_register"], st, want)
        op = ops[-1]
        if op.get("op") != "uffd_register":
            return pre + ops
        if "mode" not in want:
            op["mode"] = self.rng.choice(("missing", "wp", ["missing", "wp"], "minor", "missing"))
        mode = op["mode"]
        uffd = str(op.get("uffd"))
        if ("missing" in mode if isinstance(mode, (list, str)) else True) and not st.uffds.get(uffd):
            st.hazards.add("missing")
        return pre + ops

    def op_prctl_set_memory_merge(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """KSM on or off."""
        # Mostly turning it off once it is on, and on otherwise.
        doc: Doc = {"op": "prctl", "option": "set_memory_merge", "value": 0 if st.ksm and self.chance(0.7) else 1}
        st.ksm = bool(doc["value"])
        if "value" in want:
            doc["value"] = edge_value(want["value"][4:], 0, self.rng)
        return [doc]


    # -- protection keys ----------------------------------------------------------------------------------
    def pkey(self, st: GenState) -> int:
        """A protection key: one allocated so far (the kernel hands out 1, 2, ...), the default 0, -1, or any."""
        rng = self.rng
        if st.pkeys and self.chance(0.5):
            return rng.randint(1, st.pkeys)
        return rng.choice((0, -1, -1, 1, 2, rng.randint(0, 16)))

    def op_pkey_alloc(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A pkey_alloc with rights now and then (flags 0 unless wanted)."""
        doc: Doc = {"op": "pkey_alloc"}
        if self.chance(0.5):
            doc["access"] = self.rng.choice((["disable_write"], ["disable_access"], [],
                                             ["disable_access", "disable_write"]))
        st.pkeys += 1
        return [self.fill(self.by_label["pkey_alloc"], doc, want) if want else doc]

    def op_pkey_free(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A pkey_free of a key allocated before, or of one that is not."""
        doc: Doc = {"op": "pkey_free", "pkey": self.pkey(st)}
        if "pkey" in want:
            doc["pkey"] = edge_value(want["pkey"][4:], doc["pkey"], self.rng)
        return [doc]

    def op_pkey_mprotect(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A pkey_mprotect across nearby boundaries, with an allocated key, -1 (like mprotect) or another."""
        ops = self.generic(self.by_label["pkey_mprotect"], st, want)
        op = ops[-1]
        if "prot" not in want:
            op["prot"] = self.rng.choice(PROTS_USUAL)
        if "pkey" not in want:
            op["pkey"] = self.pkey(st)
        elif op.get("op") == "pkey_mprotect":
            op["pkey"] = edge_value(want["pkey"][4:], self.pkey(st), self.rng)
        return ops

    # -- process_madvise ------------------------------------------------------------------------------------
    def advice(self, st: GenState, want: dict[str, str], doc: Doc) -> None:
        """Advice for a madvise-like op: flag-changing advice more often, none that may wait for a uffd handler."""
        if "advice" in want:
            return
        if self.chance(0.55):
            doc["advice"] = self.rng.choice((*HARMLESS_ADVICE, "dontfork", "dofork", "wipeonfork"))
        if doc["advice"] in ("populate_read", "populate_write", "willneed") and self._populates(st, want):
            doc["advice"] = "normal"
        if doc["advice"] in ("dontneed", "remove", "free") and "remove" in st.hazards and self.chance(0.85):
            doc["advice"] = "normal"

    def op_process_madvise(self, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """A process_madvise of a few ranges of the program's own process (flags 0 unless wanted)."""
        doc: Doc = {"op": "process_madvise", "ranges": [],
                    "advice": self.value(self.by_label["process_madvise"].kinds()["advice"], None)}
        self.advice(st, want, doc)
        kinds = self.by_label["process_madvise"].kinds()
        for name, item in want.items():
            doc[name] = self.value(kinds[name], item, doc.get(name))
        doc["ranges"] = self.ranges(st, harmless=doc["advice"] in HARMLESS_ADVICE)
        return [doc]
