"""Run a :class:`~vmasim.program.Program` on the model and produce the contract's layout report."""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from typing import Any, TypeVar

from vmasim import constants as C
from vmasim.api import AddressSpace
from vmasim.constants import MASK64
from vmasim.core.flags import VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE, VM_READ, VM_SHARED, from_mnemonics
from vmasim.core.vma import File, Inode, Vma
from vmasim.profile import Profile, resolve_profile
from vmasim.program import ops
from vmasim.program.names import FILE_SYSTEMS
from vmasim.program.ops import OpDef, Result
from vmasim.program.parse import Op, Program
from vmasim.program.report import OpResult, Report, op_result
from vmasim.program.values import AddrRef
from vmasim.report import layout
from vmasim.syscalls.exec import exec_mmap
from vmasim.syscalls.shm import IpcNamespace, sys_shmat, sys_shmdt, sys_shmget

T = TypeVar("T", bound=OpDef)

# What the runner's walls are called (a memfd): a program reaching into them sees this object.
WALL_NAME = "vmasim-wall"


# Called after each op with the process, the op and its result; and once with the
# fork op and None when a fork child starts, before it runs its ops.
StepHook = Callable[["_Run", Op, "OpResult | None"], None]


class ModelTimeout(Exception):
    """A model run went past its time limit (:func:`run_model`'s ``timeout``); the message says where."""


class _Run:
    """One process running a program's ops: the address space plus name bindings."""

    def __init__(self, program: Program, space: AddressSpace, addrs: dict[str, int], fds: dict[str, int],
                 on_step: StepHook | None = None, ipc: IpcNamespace | None = None,
                 deadline: tuple[float, float] | None = None) -> None:
        self.program = program
        self.space = space
        self.addrs = addrs
        self.fds = fds
        self.children: dict[str, Report] = {}
        self.on_step = on_step
        # System V segments live in the IPC namespace, shared by every process of the program.
        self.ipc = ipc if ipc is not None else IpcNamespace()
        # (monotonic time to stop at, the limit in seconds), shared with fork children.
        self.deadline = deadline

    def addr(self, ref: AddrRef | None) -> int:
        """An address field's value now (None, no hint, is 0)."""
        return 0 if ref is None else ref.resolve(self.addrs)

    def fd(self, name: str) -> int:
        """The descriptor a name stands for (-1 once closed: EBADF, like the runner)."""
        return self.fds.get(name, -1)

    def run(self, ops: tuple[Op, ...]) -> Report:
        """Run ``ops`` in order and report."""
        results: list[OpResult] = []
        for op in ops:
            if self.deadline is not None and time.monotonic() > self.deadline[0]:
                # Checked between ops: every op is bounded by the VMAs and page runs it visits.
                raise ModelTimeout(f"the model run was stopped after {self.deadline[1]:g} s, before op {op.path}")
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

    def step(self, op: Op) -> OpResult:
        """Run one op: its handler's value, or the errno it failed with, as the op's result entry."""
        args = op.args
        bound = args.get("as") if "as_" in type(args).model_fields else None
        try:
            value = HANDLERS[type(args)](self, op)
        except OSError as exc:
            if bound is not None:
                self.addrs[bound] = MASK64  # a failed call's "address" is -1, as on the runner
            return op_result(args, None, exc.errno if exc.errno is not None else errno.EINVAL)
        if bound is not None:
            # A break is reported relative to the initial break, and bound as the address it is.
            base = self.space.initial_break if type(args).result is Result.BREAK else 0
            self.addrs[bound] = (int(value) + base) & MASK64
        return op_result(args, value)


Handler = Callable[[_Run, Op], Any]
#: Each op definition's handler: what running it means on the model.
HANDLERS: dict[type[OpDef], Handler] = {}


def handles(cls: type[OpDef]) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of op definition ``cls``."""

    def register(fn: Handler) -> Handler:
        HANDLERS[cls] = fn
        return fn

    return register


def _args(op: Op, cls: type[T]) -> T:
    assert isinstance(op.args, cls)
    return op.args


@handles(ops.Mmap)
def _mmap(run: _Run, op: Op) -> int:
    a = _args(op, ops.Mmap)
    fd = run.fd(a.fd) if a.fd is not None else None
    return run.space.mmap(run.addr(a.addr), a.length, a.prot, a.flags, fd, a.offset)


@handles(ops.Munmap)
def _munmap(run: _Run, op: Op) -> int:
    a = _args(op, ops.Munmap)
    run.space.munmap(run.addr(a.addr), a.length)
    return 0


@handles(ops.Mprotect)
def _mprotect(run: _Run, op: Op) -> int:
    a = _args(op, ops.Mprotect)
    run.space.mprotect(run.addr(a.addr), a.length, a.prot_bits)
    return 0


@handles(ops.Madvise)
def _madvise(run: _Run, op: Op) -> int:
    a = _args(op, ops.Madvise)
    run.space.madvise(run.addr(a.addr), a.length, a.advice)
    return 0


@handles(ops.Mlock)
def _mlock(run: _Run, op: Op) -> int:
    a = _args(op, ops.Mlock)
    run.space.mlock(run.addr(a.addr), a.length)
    return 0


@handles(ops.Munlock)
def _munlock(run: _Run, op: Op) -> int:
    a = _args(op, ops.Munlock)
    run.space.munlock(run.addr(a.addr), a.length)
    return 0


@handles(ops.Mlock2)
def _mlock2(run: _Run, op: Op) -> int:
    a = _args(op, ops.Mlock2)
    run.space.mlock2(run.addr(a.addr), a.length, a.flags)
    return 0


@handles(ops.Mlockall)
def _mlockall(run: _Run, op: Op) -> int:
    run.space.mlockall(_args(op, ops.Mlockall).flags)
    return 0


@handles(ops.Munlockall)
def _munlockall(run: _Run, op: Op) -> int:
    run.space.munlockall()
    return 0


@handles(ops.Mbind)
def _mbind(run: _Run, op: Op) -> int:
    a = _args(op, ops.Mbind)
    run.space.mbind(run.addr(a.addr), a.length, a.mode_bits, a.nodes, a.flags)
    return 0


@handles(ops.SetMempolicy)
def _set_mempolicy(run: _Run, op: Op) -> int:
    a = _args(op, ops.SetMempolicy)
    run.space.set_mempolicy(a.mode_bits, a.nodes)
    return 0


@handles(ops.Mseal)
def _mseal(run: _Run, op: Op) -> int:
    a = _args(op, ops.Mseal)
    run.space.mseal(run.addr(a.addr), a.length, a.flags)
    return 0


@handles(ops.Mremap)
def _mremap(run: _Run, op: Op) -> int:
    a = _args(op, ops.Mremap)
    return run.space.mremap(run.addr(a.addr), a.old_length, a.new_length, a.flags, run.addr(a.new_addr))


@handles(ops.Sbrk)
def _sbrk(run: _Run, op: Op) -> int:
    return run.space.sbrk(_args(op, ops.Sbrk).increment) - run.space.initial_break


@handles(ops.Brk)
def _brk(run: _Run, op: Op) -> int:
    # The program's heap starts at the initial break (the model's start_brk): brk(0) and any address
    # below only ask for the break.
    return run.space.brk(run.addr(_args(op, ops.Brk).addr)) - run.space.initial_break


@handles(ops.Touch)
def _touch(run: _Run, op: Op) -> tuple[int, str | None]:
    a = _args(op, ops.Touch)
    res = run.space.touch(run.addr(a.addr), a.length, a.write)
    return res.pages, res.fault


@handles(ops.Memfd)
def _memfd(run: _Run, op: Op) -> int:
    a = _args(op, ops.Memfd)
    run.fds[a.name] = run.space.memfd_create(a.name, a.size)
    return 0


@handles(ops.FileOp)
def _file(run: _Run, op: Op) -> int:
    a = _args(op, ops.FileOp)
    # On a tmpfs (the runner's /dev/shm) the file is shmem: its size limit is shmem's, its huge pages follow
    # the mount's huge= option.
    tmpfs = a.fs == FILE_SYSTEMS["tmpfs"]
    run.fds[a.name] = run.space.create_file(a.name, a.size, fs="tmpfs" if tmpfs else None)
    return 0


@handles(ops.Open)
def _open(run: _Run, op: Op) -> int:
    a = _args(op, ops.Open)
    run.fds[a.name] = run.space.reopen(run.fd(a.of), writable=a.mode == C.O_RDWR)
    return 0


@handles(ops.Dup)
def _dup(run: _Run, op: Op) -> int:
    a = _args(op, ops.Dup)
    run.fds[a.name] = run.space.dup(run.fd(a.of))
    return 0


@handles(ops.Ftruncate)
def _ftruncate(run: _Run, op: Op) -> int:
    a = _args(op, ops.Ftruncate)
    run.space.ftruncate(run.fd(a.fd), a.size)
    return 0


@handles(ops.Pwrite)
def _pwrite(run: _Run, op: Op) -> int:
    a = _args(op, ops.Pwrite)
    return run.space.pwrite(run.fd(a.fd), a.offset, a.length)


@handles(ops.Close)
def _close(run: _Run, op: Op) -> int:
    # Like the runner: a closed name is unbound, so later uses are EBADF.
    run.space.close(run.fds.pop(_args(op, ops.Close).fd, -1))
    return 0


@handles(ops.Userfaultfd)
def _userfaultfd(run: _Run, op: Op) -> int:
    a = _args(op, ops.Userfaultfd)
    run.fds[a.name] = run.space.userfaultfd(a.features)
    return 0


@handles(ops.UffdRegister)
def _uffd_register(run: _Run, op: Op) -> int:
    a = _args(op, ops.UffdRegister)
    run.space.uffd_register(run.fd(a.uffd), run.addr(a.addr), a.length, a.mode)
    return 0


@handles(ops.UffdUnregister)
def _uffd_unregister(run: _Run, op: Op) -> int:
    a = _args(op, ops.UffdUnregister)
    run.space.uffd_unregister(run.fd(a.uffd), run.addr(a.addr), a.length)
    return 0


@handles(ops.PrctlSetVmaAnonName)
def _prctl_set_vma_anon_name(run: _Run, op: Op) -> int:
    a = _args(op, ops.PrctlSetVmaAnonName)
    run.space.prctl_set_vma_anon_name(run.addr(a.addr), a.length, a.name)
    return 0


@handles(ops.PrctlSetMemoryMerge)
def _prctl_set_memory_merge(run: _Run, op: Op) -> int:
    run.space.prctl_set_memory_merge(_args(op, ops.PrctlSetMemoryMerge).value)
    return 0


@handles(ops.Exec)
def _exec(run: _Run, op: Op) -> int:
    old = run.space
    new = new_address_space(run.program, old.profile)
    # The descriptor table survives the exec (the runner's objects are not close-on-exec).
    new._files = old._files
    new._next_fd = old._next_fd
    exec_mmap(old.mm, new.mm)
    run.space = new
    run.addrs = {"W": run.program.window_start}
    return 0


@handles(ops.Shmget)
def _shmget(run: _Run, op: Op) -> int:
    a = _args(op, ops.Shmget)
    run.fds[a.name] = sys_shmget(run.space.mm, run.ipc, a.size, a.flag_bits, a.name)
    return 0


@handles(ops.Shmat)
def _shmat(run: _Run, op: Op) -> int:
    a = _args(op, ops.Shmat)
    shmid = run.fd(a.shm)
    return sys_shmat(run.space.mm, run.ipc.get(shmid), shmid, run.addr(a.addr), a.flags)


@handles(ops.Shmdt)
def _shmdt(run: _Run, op: Op) -> int:
    return sys_shmdt(run.space.mm, run.addr(_args(op, ops.Shmdt).addr))


@handles(ops.PkeyAlloc)
def _pkey_alloc(run: _Run, op: Op) -> int:
    a = _args(op, ops.PkeyAlloc)
    return run.space.pkey_alloc(a.flags, a.access)


@handles(ops.PkeyFree)
def _pkey_free(run: _Run, op: Op) -> int:
    run.space.pkey_free(_args(op, ops.PkeyFree).pkey)
    return 0


@handles(ops.PkeyMprotect)
def _pkey_mprotect(run: _Run, op: Op) -> int:
    a = _args(op, ops.PkeyMprotect)
    run.space.pkey_mprotect(run.addr(a.addr), a.length, a.prot, a.pkey)
    return 0


@handles(ops.ProcessMadvise)
def _process_madvise(run: _Run, op: Op) -> int:
    a = _args(op, ops.ProcessMadvise)
    return run.space.process_madvise([(run.addr(ref), length) for ref, length in a.ranges], a.advice, a.flags)


@handles(ops.Fork)
def _fork(run: _Run, op: Op) -> int:
    child = _Run(run.program, run.space.fork(), dict(run.addrs), dict(run.fds), run.on_step, run.ipc,
                 run.deadline)
    if child.on_step is not None:
        child.on_step(child, op, None)  # the child's timeline starts at the fork
    run.children[str(op.index)] = child.run(op.child)
    # The child process exits once its ops ran (the runner's children do): its pages leave the family.
    child.space.mm.exited = True
    child.space.exit()
    return 0


@handles(ops.Pad)
def _pad(run: _Run, op: Op) -> int:
    mm = run.space.mm
    # The kernel runner fills the process with unrelated VMAs far from the window; it cannot take
    # VMAs away, so a target below the current count is an error there too.
    want = mm.max_map_count - _args(op, ops.Pad).headroom
    if want < mm.map_count:
        raise OSError(errno.EINVAL, "pad: the process already has more VMAs than that")
    mm.add_foreign_vmas(want - mm.map_count)
    return 0


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
    space = AddressSpace(target=prof, mmap_base=layout.mmap_base)
    mm = space.mm
    mm.stack_rlimit = layout.stack_rlimit
    mm.start_brk = mm.brk = space.initial_break = layout.initial_break
    image = File(Inode("file", "vmasim-executor", layout.image_end - layout.image_start, foreign=True),
                 writable=False)
    mm.insert_vm_struct(Vma(layout.image_start, layout.image_end, 0, VM_READ | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC,
                            file=image))
    for special in layout.special_mappings:
        mm.install_special_mapping(special.start, special.end, from_mnemonics(list(special.flags)), special.name)
    top = layout.walls_top
    if program.walls and program.window_end < top:
        # The runner never sizes the walls' memfd: its pages lie past the end of the file (SIGBUS
        # where a program makes them accessible).
        wall = File(Inode("memfd", WALL_NAME, 0, foreign=True))
        mm.insert_vm_struct(Vma(program.window_end, top, 0,
                                VM_SHARED | VM_MAYSHARE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC, file=wall))
    baseline = layout.baseline_map_count_walls if program.walls else layout.baseline_map_count
    mm.add_foreign_vmas(max(0, baseline - mm.map_count))
    return space


def run_model(program: Program, profile: Profile | str | None = None, *, timeout: float | None = None) -> Report:
    """Run ``program`` on a fresh model address space of ``profile`` (default: the built-in default)
    and return its layout report.

    With ``timeout`` (seconds, like the kernel runner's per-program limit) a
    run that goes on longer is stopped with :class:`ModelTimeout`.
    """
    return run_model_space(program, profile, timeout=timeout)[0]


def run_model_space(
    program: Program, profile: Profile | str | None = None, on_step: StepHook | None = None,
    *, timeout: float | None = None,
) -> tuple[Report, AddressSpace]:
    """Like :func:`run_model`, also returning the (parent's) address space the program ran on.

    ``on_step`` is called after every op of every process (see :data:`StepHook`).
    """
    if timeout is not None and timeout <= 0:
        raise ValueError("run_model: timeout must be positive")
    deadline = None if timeout is None else (time.monotonic() + timeout, timeout)
    run = _Run(program, new_address_space(program, profile), {"W": program.window_start}, {}, on_step,
               deadline=deadline)
    report = run.run(program.ops)
    return report, run.space  # after an exec, the new one
