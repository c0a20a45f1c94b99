"""Run a :class:`~vmasim.program.Program` on the model and produce the contract's layout report."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from vmasim.api import AddressSpace
from vmasim.core.flags import VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE, VM_READ, VM_SHARED, from_mnemonics
from vmasim.core.vma import File, Inode, Vma
from vmasim.profile import Profile, resolve_profile
from vmasim.program.parse import MASK64, Op, Program
from vmasim.report import errno_name, layout

# What the runner's walls are called (a memfd): a program reaching into them sees this object.
WALL_NAME = "vmasim-wall"


# Called after each op with the process, the op and its result; and once with the
# fork op and None when a fork child starts, before it runs its ops.
StepHook = Callable[["_Run", Op, "dict[str, Any] | None"], None]


class NotImplementedOp(Exception):
    """A program uses an op whose system-call family the model does not implement yet."""

    def __init__(self, op: Op) -> None:
        self.op = op
        super().__init__(f"op {op.path} ({op.op}): not implemented yet in the model")


class _Run:
    """One process running a program's ops: the address space plus name bindings."""

    def __init__(self, program: Program, space: AddressSpace, addrs: dict[str, int], fds: dict[str, int],
                 on_step: StepHook | None = None) -> None:
        self.program = program
        self.space = space
        self.addrs = addrs
        self.fds = fds
        self.children: dict[str, Any] = {}
        self.on_step = on_step

    def addr(self, op: Op, key: str = "addr") -> int:
        ref = op[key]
        return 0 if ref is None else int(ref.resolve(self.addrs))

    def fd(self, name: str) -> int:
        return self.fds.get(name, -1)

    def run(self, ops: tuple[Op, ...]) -> dict[str, Any]:
        results = []
        for op in ops:
            results.append(self.step(op))
            if self.on_step is not None:
                self.on_step(self, op, results[-1])
        return layout(
            self.space.mm,
            self.program.window_start,
            self.program.window_end,
            self.space.initial_break,
            results,
            self.children,
        )

    def step(self, op: Op) -> dict[str, Any]:
        handler = _HANDLERS.get(op.op)
        if handler is None:
            raise NotImplementedOp(op)
        try:
            ret = handler(self, op)
        except OSError as exc:
            if op.get("as"):
                self.addrs[op["as"]] = MASK64
            code = exc.errno if exc.errno is not None else errno.EINVAL
            return {"op": op.op, "ret": -1, "errno": errno_name(code)}
        if isinstance(ret, dict):
            return ret  # a complete result (touch reports pages and fault, not ret/errno)
        if op.op in ("mmap", "mremap"):
            if op.get("as"):
                self.addrs[op["as"]] = int(ret)
            return {"op": op.op, "ret": hex(int(ret)), "errno": None}
        return {"op": op.op, "ret": ret if isinstance(ret, (int, str)) else 0, "errno": None}


def _mmap(run: _Run, op: Op) -> int:
    fd = run.fd(op["fd"]) if op["fd"] is not None else -1
    return run.space.mmap(run.addr(op), op["length"], op["prot"], op["flags"], fd, op["offset"])


def _mremap(run: _Run, op: Op) -> int:
    new_addr = run.addr(op, "new_addr") if op["new_addr"] is not None else 0
    return run.space.mremap(run.addr(op), op["old_length"], op["new_length"], op["flags"], new_addr)


def _touch(run: _Run, op: Op) -> dict[str, Any]:
    res = run.space.touch(run.addr(op), op["length"], op["write"])
    return {"op": "touch", "pages": res.pages, "fault": res.fault}


def _munmap(run: _Run, op: Op) -> int:
    run.space.munmap(run.addr(op), op["length"])
    return 0


def _mprotect(run: _Run, op: Op) -> int:
    run.space.mprotect(run.addr(op), op["length"], op["prot"])
    return 0


def _memfd(run: _Run, op: Op) -> int:
    run.fds[op["name"]] = run.space.memfd_create(op["name"], op["size"])
    return 0


def _file(run: _Run, op: Op) -> int:
    run.fds[op["name"]] = run.space.create_file(op["name"], op["size"])
    return 0


def _open(run: _Run, op: Op) -> int:
    run.fds[op["name"]] = run.space.reopen(run.fd(op["of"]), writable=op["mode"] == "rw")
    return 0


def _dup(run: _Run, op: Op) -> int:
    run.fds[op["name"]] = run.space.dup(run.fd(op["of"]))
    return 0


def _ftruncate(run: _Run, op: Op) -> int:
    run.space.ftruncate(run.fd(op["fd"]), op["size"])
    return 0


def _close(run: _Run, op: Op) -> int:
    # Like the runner: a closed name is unbound, so later uses are EBADF.
    run.space.close(run.fds.pop(op["fd"], -1))
    return 0


def _userfaultfd(run: _Run, op: Op) -> int:
    run.fds[op["name"]] = run.space.userfaultfd(op["features"])
    return 0


def _uffd_register(run: _Run, op: Op) -> int:
    run.space.uffd_register(run.fd(op["uffd"]), run.addr(op), op["length"], op["mode"])
    return 0


def _uffd_unregister(run: _Run, op: Op) -> int:
    run.space.uffd_unregister(run.fd(op["uffd"]), run.addr(op), op["length"])
    return 0


def _simple(method: str, *keys: str) -> Callable[[_Run, Op], int]:
    """A handler calling ``AddressSpace.<method>`` with the op's fields (``addr`` resolved)."""

    def handler(run: _Run, op: Op) -> int:
        args = [run.addr(op) if k == "addr" else op[k] for k in keys]
        getattr(run.space, method)(*args)
        return 0

    return handler


def _sbrk(run: _Run, op: Op) -> str:
    old = run.space.sbrk(op["increment"])
    return "+" + hex(old - run.space.initial_break)


def _prctl(run: _Run, op: Op) -> int:
    if op["option"] == "set_memory_merge":
        run.space.prctl_set_memory_merge(op["value"])
    else:
        run.space.prctl_set_vma_anon_name(run.addr(op), op["length"], op["name"])
    return 0


def _fork(run: _Run, op: Op) -> int:
    child = _Run(run.program, run.space.fork(), dict(run.addrs), dict(run.fds), run.on_step)
    if child.on_step is not None:
        child.on_step(child, op, None)  # the child's timeline starts at the fork
    run.children[op.path.rsplit(".", 1)[-1]] = child.run(op.child)
    child.space.exit()
    return 0


def _pad(run: _Run, op: Op) -> int:
    mm = run.space.mm
    # The kernel runner fills the process with unrelated VMAs far from the window; it cannot take
    # VMAs away, so a target below the current count is an error there too.
    want = mm.max_map_count - op["headroom"]
    if want < mm.map_count:
        raise OSError(errno.EINVAL, "pad: the process already has more VMAs than that")
    mm.hidden_map_count += want - mm.map_count
    return 0


_HANDLERS: dict[str, Callable[[_Run, Op], Any]] = {
    "mmap": _mmap,
    "munmap": _munmap,
    "mremap": _mremap,
    "mprotect": _mprotect,
    "touch": _touch,
    "memfd": _memfd,
    "file": _file,
    "open": _open,
    "dup": _dup,
    "ftruncate": _ftruncate,
    "close": _close,
    "pad": _pad,
    "madvise": _simple("madvise", "addr", "length", "advice"),
    "mlock": _simple("mlock", "addr", "length"),
    "munlock": _simple("munlock", "addr", "length"),
    "mlock2": _simple("mlock2", "addr", "length", "flags"),
    "mlockall": _simple("mlockall", "flags"),
    "munlockall": _simple("munlockall"),
    "mbind": _simple("mbind", "addr", "length", "mode", "nodes", "flags"),
    "set_mempolicy": _simple("set_mempolicy", "mode", "nodes"),
    "mseal": _simple("mseal", "addr", "length", "flags"),
    "sbrk": _sbrk,
    "prctl": _prctl,
    "fork": _fork,
    "userfaultfd": _userfaultfd,
    "uffd_register": _uffd_register,
    "uffd_unregister": _uffd_unregister,
}

SUPPORTED_OPS = frozenset(_HANDLERS)


def unsupported_ops(program: Program) -> list[Op]:
    """The ops (fork children included) that the model cannot run yet."""
    out: list[Op] = []

    def walk(ops: tuple[Op, ...]) -> None:
        for op in ops:
            if op.op not in _HANDLERS:
                out.append(op)
            walk(op.child)

    walk(program.ops)
    return out


def new_address_space(program: Program, profile: Profile | str | None = None) -> AddressSpace:
    """An empty model address space laid out like the kernel runner's process for ``program``.

    The profile's process layout places the runner's executable, the initial
    break and the vDSO's special mappings; with walls, everything from the
    window's end up to the special mappings is one PROT_NONE shared memfd
    mapping that never merges, so hint-less mappings land top-down from the
    window's end.  VMAs the runner has and the model does not hold (its
    stack, a second wall) are counted as hidden, so map_count limits bite at
    the same op on both sides.
    """
    prof = resolve_profile(profile)
    layout = prof.layout
    space = AddressSpace(target=prof.target, mmap_base=layout.mmap_base)
    mm = space.mm
    mm.stack_rlimit = layout.stack_rlimit
    mm.start_brk = mm.brk = space.initial_break = layout.initial_break
    image = File(Inode("file", "vmasim-executor", layout.image_end - layout.image_start, foreign=True),
                 writable=False)
    mm.link(Vma(layout.image_start, layout.image_end, 0, VM_READ | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC, file=image))
    for special in layout.special_mappings:
        # _install_special_mapping(): no file, but vm_ops (with a close hook), so never "anonymous".
        mm.link(Vma(special.start, special.end, 0, from_mnemonics(list(special.flags)),
                    file=File(Inode("special", special.name)), has_close=True))
    top = layout.walls_top
    if program.walls and program.window_end < top:
        wall = File(Inode("memfd", WALL_NAME, top - program.window_end, foreign=True))
        mm.link(Vma(program.window_end, top, 0, VM_SHARED | VM_MAYSHARE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC,
                    file=wall))
    baseline = layout.baseline_map_count_walls if program.walls else layout.baseline_map_count
    mm.hidden_map_count = max(0, baseline - len(mm.vmas))
    return space


def run_model(program: Program, profile: Profile | str | None = None) -> dict[str, Any]:
    """Run ``program`` on a fresh model address space of ``profile`` (default: the built-in default)
    and return its layout report.

    Raises :class:`NotImplementedOp` before running anything if an op is not
    modelled yet.
    """
    return run_model_space(program, profile)[0]


def run_model_space(
    program: Program, profile: Profile | str | None = None, on_step: StepHook | None = None
) -> tuple[dict[str, Any], AddressSpace]:
    """Like :func:`run_model`, also returning the (parent's) address space the program ran on.

    ``on_step`` is called after every op of every process (see :data:`StepHook`).
    """
    missing = unsupported_ops(program)
    if missing:
        raise NotImplementedOp(missing[0])
    space = new_address_space(program, profile)
    report = _Run(program, space, {"W": program.window_start}, {}, on_step).run(program.ops)
    return report, space
