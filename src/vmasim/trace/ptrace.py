"""The tracer's view of the kernel: ptrace(2), waitpid status words, a seccomp filter, tracee memory.

A thin ctypes layer over libc, x86_64 only.  Everything here is a direct
system call; policy (what to do at each stop) lives in :mod:`vmasim.trace.tracer`.

Stops the tracer sees (tracees are attached with PTRACE_SEIZE):

- a *seccomp stop* (PTRACE_EVENT_SECCOMP) at the entry of every call the
  filter from :func:`seccomp_filter` marks SECCOMP_RET_TRACE;
- a *syscall-exit stop* (SIGTRAP|0x80) after the tracer resumed a seccomp
  stop with PTRACE_SYSCALL: since Linux 4.8 the seccomp check runs after the
  syscall-entry report, so the next report is the exit;
- PTRACE_EVENT_FORK/VFORK/CLONE/EXEC/EXIT stops, PTRACE_EVENT_STOP
  (group-stops and a new child's first stop), and signal-delivery stops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import signal
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.personality.restype = ctypes.c_int
_libc.personality.argtypes = [ctypes.c_ulong]


class _Iovec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


_libc.process_vm_readv.restype = ctypes.c_ssize_t
_libc.process_vm_readv.argtypes = [
    ctypes.c_int, ctypes.POINTER(_Iovec), ctypes.c_ulong, ctypes.POINTER(_Iovec), ctypes.c_ulong, ctypes.c_ulong,
]

PTRACE_CONT = 7
PTRACE_SYSCALL = 24
PTRACE_GETEVENTMSG = 0x4201
PTRACE_SEIZE = 0x4206
PTRACE_LISTEN = 0x4208
PTRACE_GET_SYSCALL_INFO = 0x420E

PTRACE_O_TRACESYSGOOD = 0x1
PTRACE_O_TRACEFORK = 0x2
PTRACE_O_TRACEVFORK = 0x4
PTRACE_O_TRACECLONE = 0x8
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_TRACEEXIT = 0x40
PTRACE_O_TRACESECCOMP = 0x80
PTRACE_O_EXITKILL = 0x100000

PTRACE_EVENT_FORK = 1
PTRACE_EVENT_VFORK = 2
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_EXIT = 6
PTRACE_EVENT_SECCOMP = 7
PTRACE_EVENT_STOP = 128

#: The options every tracee gets (auto-attached children inherit them).
OPTIONS = (
    PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE
    | PTRACE_O_TRACEEXEC | PTRACE_O_TRACEEXIT | PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL
)

SYSCALL_STOP_SIG = signal.SIGTRAP | 0x80
WALL = 0x40000000  # __WALL: threads and children alike

PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1
SECCOMP_SET_MODE_FILTER = 1
SYS_SECCOMP = 317
SYS_KCMP = 312
SYS_PIDFD_GETFD = 438
ADDR_NO_RANDOMIZE = 0x0040000

AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_TRACE = 0x7FF00000


class PtraceError(OSError):
    """A ptrace request failed (the errno says why; ESRCH means the tracee is gone)."""


def _check(ret: int, what: str) -> int:
    if ret == -1:
        code = ctypes.get_errno()
        raise PtraceError(code, f"{what}: {os.strerror(code)}")
    return ret


def ptrace(request: int, pid: int, addr: int = 0, data: int = 0) -> int:
    """One ptrace(2) request; raises :class:`PtraceError` on failure."""
    ret: int = _libc.ptrace(request, pid, addr, data)
    if ret == -1:  # the message is made only on failure: this runs at every stop
        _check(ret, f"ptrace({request:#x}, {pid})")
    return ret


def seize(pid: int) -> None:
    """PTRACE_SEIZE with :data:`OPTIONS`."""
    ptrace(PTRACE_SEIZE, pid, 0, OPTIONS)


def resume(pid: int, sig: int = 0, *, to_exit: bool = False) -> bool:
    """Restart a stopped tracee (PTRACE_SYSCALL when ``to_exit``, else PTRACE_CONT); False if it is gone."""
    try:
        ptrace(PTRACE_SYSCALL if to_exit else PTRACE_CONT, pid, 0, sig)
    except PtraceError as exc:
        if exc.errno == errno.ESRCH:
            return False
        raise
    return True


def listen(pid: int) -> None:
    """PTRACE_LISTEN: leave a seized tracee in its group-stop, still reporting."""
    try:
        ptrace(PTRACE_LISTEN, pid)
    except PtraceError as exc:
        if exc.errno != errno.ESRCH:
            raise


def event_msg(pid: int) -> int:
    """PTRACE_GETEVENTMSG: the new tid of a fork/clone event, the former tid of an exec event."""
    msg = ctypes.c_ulong(0)
    ptrace(PTRACE_GETEVENTMSG, pid, 0, ctypes.addressof(msg))
    return int(msg.value)


# struct ptrace_syscall_info: op, pad[3], arch, instruction_pointer, stack_pointer, then a union of
# entry {nr, args[6]}, exit {rval, is_error} and seccomp {nr, args[6], ret_data}.
_INFO_SIZE = 88
_HEAD = struct.Struct("=B3xIQQ")
_BODY = struct.Struct("=Q6Q")
_EXIT = struct.Struct("=qB")
OP_ENTRY, OP_EXIT, OP_SECCOMP = 1, 2, 3


@dataclass(slots=True)
class SyscallInfo:
    """What PTRACE_GET_SYSCALL_INFO says at a stop: the call number and arguments, or the result."""

    op: int
    arch: int
    nr: int = -1
    args: tuple[int, ...] = ()
    rval: int = 0
    is_error: bool = False


_info_buf = ctypes.create_string_buffer(_INFO_SIZE)
_info_addr = ctypes.addressof(_info_buf)
_CALL = struct.Struct(_HEAD.format + _BODY.format[1:])  # the head, then nr and args
_RESULT = struct.Struct(_HEAD.format + _EXIT.format[1:])  # the head, then rval and is_error


def syscall_info(pid: int) -> SyscallInfo:
    """PTRACE_GET_SYSCALL_INFO for a tracee in a seccomp, syscall-entry or syscall-exit stop."""
    ptrace(PTRACE_GET_SYSCALL_INFO, pid, _INFO_SIZE, _info_addr)
    op = _info_buf[0][0]  # straight from the buffer: this runs at every stop
    if op in (OP_ENTRY, OP_SECCOMP):
        fields = _CALL.unpack_from(_info_buf)
        return SyscallInfo(op, fields[1], fields[4], fields[5:])
    if op == OP_EXIT:
        _op, arch, _ip, _sp, rval, is_error = _RESULT.unpack_from(_info_buf)
        return SyscallInfo(op, arch, rval=rval, is_error=bool(is_error))
    return SyscallInfo(op, _HEAD.unpack_from(_info_buf)[1])


def read_memory(pid: int, addr: int, length: int) -> bytes:
    """``length`` bytes of the tracee's memory at ``addr`` (process_vm_readv); OSError when unreadable."""
    buf = ctypes.create_string_buffer(length)
    local = _Iovec(ctypes.cast(buf, ctypes.c_void_p), length)
    remote = _Iovec(addr, length)
    got = _libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if got != length:
        code = ctypes.get_errno() if got == -1 else errno.EFAULT
        raise OSError(code, f"process_vm_readv({pid}, {addr:#x}, {length}): {os.strerror(code)}")
    return buf.raw


# --- waitpid status words ----------------------------------------------------------------------------


def wait_any(spin: float = 0.0) -> tuple[int, int]:
    """waitpid(-1, __WALL): the next (tid, status) of any tracee; (0, 0) when there are none left.

    With ``spin`` (seconds), poll without sleeping that long first.  A stop
    hands the CPU from the tracee to the tracer; a tracer asleep in waitpid
    must be woken on its CPU, which on a virtual machine whose idle CPUs halt
    costs tens of microseconds, more than most calls take to reach the next
    stop.  Polling keeps the tracer's CPU awake for that short while.
    """
    if spin > 0:
        deadline = time.perf_counter() + spin
        while True:
            try:
                pid, status = os.waitpid(-1, WALL | os.WNOHANG)
            except ChildProcessError:
                return 0, 0
            if pid:
                return pid, status
            if time.perf_counter() > deadline:
                break
    while True:
        try:
            pid, status = os.waitpid(-1, WALL)
        except ChildProcessError:
            return 0, 0
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue
        return pid, status


def stop_event(status: int) -> int:
    """The PTRACE_EVENT_* of a stopped status word (0 for plain signal stops)."""
    return (status >> 16) & 0xFF


# --- seccomp ------------------------------------------------------------------------------------------

_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGE_K = 0x35
_BPF_RET_K = 0x06
_SECCOMP_NR = 0
_SECCOMP_ARCH = 4


def _arg_lo(i: int) -> int:
    # The low 32 bits of seccomp_data.args[i] (little endian).
    return 16 + 8 * i


def seccomp_filter(calls: Sequence[int], arg_filters: Mapping[int, tuple[int, Sequence[int]]]) -> bytes:
    """A classic-BPF seccomp program: SECCOMP_RET_TRACE for ``calls`` and, for each ``nr`` in
    ``arg_filters`` mapped to ``(arg index, values)``, for that call when the argument's low 32 bits
    are one of the values; SECCOMP_RET_ALLOW for everything else (and for other architectures)."""
    prog: list[tuple[int, int, int, int]] = []
    trace_at: list[int] = []  # indexes of jumps whose true branch goes to the TRACE return

    def emit(code: int, k: int, jt: int = 0, jf: int = 0) -> int:
        prog.append((code, jt, jf, k))
        return len(prog) - 1

    emit(_BPF_LD_W_ABS, _SECCOMP_ARCH)
    emit(_BPF_JEQ_K, AUDIT_ARCH_X86_64, 1, 0)
    emit(_BPF_RET_K, SECCOMP_RET_ALLOW)
    emit(_BPF_LD_W_ABS, _SECCOMP_NR)
    emit(_BPF_JGE_K, 0x40000000, 0, 1)  # x32 calls are not ours
    emit(_BPF_RET_K, SECCOMP_RET_ALLOW)
    for nr in calls:
        trace_at.append(emit(_BPF_JEQ_K, nr))
    blocks: list[tuple[int, int, Sequence[int]]] = []
    for nr, (arg, values) in arg_filters.items():
        blocks.append((emit(_BPF_JEQ_K, nr), arg, values))
    allow = emit(_BPF_RET_K, SECCOMP_RET_ALLOW)
    block_starts = []
    for _jump, arg, values in blocks:
        block_starts.append(len(prog))
        emit(_BPF_LD_W_ABS, _arg_lo(arg))
        for value in values:
            trace_at.append(emit(_BPF_JEQ_K, value & 0xFFFFFFFF))
        emit(_BPF_RET_K, SECCOMP_RET_ALLOW)
    trace = emit(_BPF_RET_K, SECCOMP_RET_TRACE)
    for (jump, _arg, _values), start in zip(blocks, block_starts, strict=True):
        code, _jt, _jf, k = prog[jump]
        prog[jump] = (code, start - jump - 1, 0, k)
    for i in trace_at:
        code, _jt, jf, k = prog[i]
        prog[i] = (code, trace - i - 1, jf, k)
    del allow
    for _code, jt, jf, _k in prog:
        assert 0 <= jt < 256 and 0 <= jf < 256, "seccomp filter jump too long"
    return b"".join(struct.pack("=HBBI", code, jt, jf, k) for code, jt, jf, k in prog)


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def install_seccomp(program: bytes) -> None:
    """Install ``program`` in the calling process (setting no_new_privs first when not privileged)."""
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    ret = _libc.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, 0, ctypes.byref(fprog))
    if ret == -1 and ctypes.get_errno() == errno.EACCES:
        # Without CAP_SYS_ADMIN a filter needs no_new_privs (setuid programs then run unprivileged).
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        ret = _libc.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, 0, ctypes.byref(fprog))
    _check(ret, "seccomp(SECCOMP_SET_MODE_FILTER)")


def kcmp_files(pid1: int, fd1: int, pid2: int, fd2: int) -> bool:
    """kcmp(KCMP_FILE): whether two descriptors refer to the same open file description."""
    ret = _libc.syscall(SYS_KCMP, pid1, pid2, 0, fd1, fd2)
    return bool(ret == 0)


def pidfd_getfd(pid: int, fd: int) -> int:
    """A duplicate, in the tracer, of descriptor ``fd`` of process ``pid`` (pidfd_getfd(2), Linux 5.6).

    The duplicate shares the open file description, so :func:`kcmp_files`
    can later tell whether a descriptor of ``pid`` still refers to it.
    Raises OSError (ENOSYS on older kernels, EMFILE when the tracer has no
    descriptor left, EBADF when ``fd`` is not open).
    """
    pidfd = os.pidfd_open(pid)
    try:
        return pidfd_getfd_via(pidfd, fd)
    finally:
        os.close(pidfd)


def pidfd_getfd_via(pidfd: int, fd: int) -> int:
    """:func:`pidfd_getfd` through an open pidfd (a tracer keeps one per process it duplicates from)."""
    return _check(_libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0), f"pidfd_getfd({fd})")


# --- launching -----------------------------------------------------------------------------------------


def launch(argv: Sequence[str], program: bytes, *, no_aslr: bool = False, stdout: int | None = None) -> tuple[int, int]:
    """Fork, let the tracer seize the child, install ``program`` in it and exec ``argv``.

    Returns the pid and the read end of a close-on-exec pipe for
    :func:`launch_error`.  The child waits on a second pipe until the tracer
    has seized it, and only then installs the filter: a SECCOMP_RET_TRACE with
    no tracer attached would fail the call with ENOSYS.  The tracer seizes it
    while it is still getting over the fork, so nobody waits for a stop.
    """
    # Search PATH here: an execvp in the child would stop at every failed execve.
    path = shutil.which(argv[0]) or argv[0]
    rd, wr = os.pipe2(os.O_CLOEXEC)
    go_rd, go_wr = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; coverage cannot follow it
        try:
            os.close(rd)
            os.close(go_wr)
            if stdout is not None:
                os.dup2(stdout, 1)
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.read(go_rd, 1) != b"1":  # the tracer could not seize this child
                os._exit(127)
            if no_aslr:
                _libc.personality(ADDR_NO_RANDOMIZE)
            install_seccomp(program)
            os.execv(path, list(argv))
        except OSError as exc:
            os.write(wr, f"{exc.errno or 0} {exc.strerror or exc}".encode())
        except BaseException as exc:
            os.write(wr, f"0 {exc}".encode())
        os._exit(127)
    os.close(wr)
    os.close(go_rd)
    try:
        seize(pid)
    except PtraceError:
        os.write(go_wr, b"0")
        os.close(go_wr)
        os.waitpid(pid, 0)
        os.close(rd)
        raise
    os.write(go_wr, b"1")
    os.close(go_wr)
    return pid, rd


def launch_error(rd: int) -> OSError | None:
    """Once the child exec'd (or died): the error that kept it from exec'ing, if any; closes ``rd``."""
    try:
        data = os.read(rd, 4096)
    finally:
        os.close(rd)
    if not data:
        return None
    code, _, text = data.decode(errors="replace").partition(" ")
    return OSError(int(code) if code.isdigit() else 0, text)
