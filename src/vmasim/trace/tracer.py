"""The event loop: every stop of every tracee, and what the mirror does at it.

Memory calls on one address space are mirrored strictly one at a time: a
task stopped at the entry of a memory call is resumed only when no other
memory call on the same address space is between its entry and exit stops.
Tasks that are not stopped cannot enter a traced call without stopping, so
the order in which the model applies calls is the order in which the kernel
took the mmap lock for them.  Faults, which need no call, still run
concurrently in multi-threaded programs; that is one of the approximations.
A call mirrored at its entry alone (see :meth:`Tracer._unwatched`) is one on
an address space no other task uses.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from vmasim import constants as C
from vmasim.api import AddressSpace
from vmasim.core.flags import mnemonics
from vmasim.core.vma import Vma
from vmasim.procimport import ProcImportError, ProcVma, from_pid, read_smaps_text, smaps_vmas
from vmasim.render import perms
from vmasim.trace import ptrace as P
from vmasim.trace.arguments import ArgumentReader, exec_target_exists
from vmasim.trace.check import Before, Divergence, compare, follow_stack_growth, model_entries, path_of, resync
from vmasim.trace.fds import FdTable, Handle, OpenFiles, open_fds, reap_userfaultfds
from vmasim.trace.host import host_files
from vmasim.trace.interface import Options, TraceResult
from vmasim.trace.mirror import (
    Image,
    Unmodelled,
    before_call,
    predicted_ranges,
    result_ranges,
    run,
    touched_ranges,
    uffd_target,
    unmodelled_mmap,
)
from vmasim.trace.syscalls import (
    CLONE_FILES,
    CLONE_THREAD,
    CLONE_VFORK,
    CLONE_VM,
    DESCRIPTOR_CALLS,
    NAME,
    ONE_STOP_ADVICE,
    ONE_STOP_CALLS,
    PROCESS_CALLS,
    TRACED_IF,
    USERFAULTFD_IOC_NEW,
    Call,
    traced_calls,
)

RUNNING, NEW, DEFERRED, IN_MEMORY, IN_DESCRIPTOR, IN_PROCESS = range(6)
_STOP_SIGNALS = (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


@dataclass(slots=True)
class Task:
    """One traced thread."""

    tid: int
    tgid: int
    image: Image | None
    fdt: FdTable
    state: int = RUNNING
    call: Call | None = None


class Tracer:
    """Runs a command under ptrace and mirrors its address spaces on the model."""

    def __init__(self, argv: list[str], options: Options | None = None) -> None:
        self.argv = argv
        self.options = options or Options()
        self.files = host_files()
        self.tasks: dict[int, Task] = {}
        self.images: list[Image] = []
        self.by_mm: dict[int, Image] = {}
        self.orphans: set[int] = set()
        self.exit_status: int | None = None
        self.root = 0
        # Open files told apart by kcmp against the tracer's duplicates, so close needs no stop; None
        # where the kernel has no pidfd_getfd (then every close is stopped on instead).
        self.open_files = OpenFiles(self.files) if OpenFiles.available() else None
        self.uffds = 0  # userfaultfds created so far
        self.failure: str | None = None  # an error of the mirror itself, after which tracing stopped
        self.arguments = ArgumentReader(self.files, self.open_files, self._live_files)

    # --- running -------------------------------------------------------------------------------------------

    def run(self) -> TraceResult:
        """Trace the command to its end."""
        program = P.seccomp_filter(traced_calls(close=self.open_files is None), TRACED_IF)
        started = time.perf_counter()
        pid, errpipe = P.launch(self.argv, program, no_aslr=self.options.no_aslr, stdout=self.options.stdout)
        self.root = pid
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)  # room for OpenFiles' duplicates; not the program's
        if self.open_files is not None and nofile[0] < nofile[1]:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(nofile[1], 1 << 20), nofile[1]))
        fdt = FdTable()
        fdt.users = 1
        self.tasks[pid] = Task(pid, pid, None, fdt)
        error: str | None = None
        try:
            self._loop()
        finally:
            for task in list(self.tasks.values()):
                with contextlib.suppress(OSError):
                    os.kill(task.tid, signal.SIGKILL)
            if self.open_files is not None:
                self.open_files.close()
            with contextlib.suppress(OSError, ValueError):
                resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
        failed = P.launch_error(errpipe)
        if failed is not None:
            error = f"cannot run {self.argv[0]}: {failed.strerror}"
        elif self.failure is not None:
            error = self.failure
        for image in self.images:
            image.close_pagemap()
        return TraceResult(self.argv, self.images, self.exit_status, time.perf_counter() - started, error, pid)

    def _loop(self) -> None:
        spin = self.options.spin if len(os.sched_getaffinity(0)) > 1 else 0.0  # on one CPU, polling only delays
        while self.tasks:
            tid, status = P.wait_any(spin)
            if tid == 0:
                return
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                self._died(tid, status)
                continue
            if not os.WIFSTOPPED(status):
                continue
            task = self.tasks.get(tid)
            sig = os.WSTOPSIG(status)
            event = P.stop_event(status)
            if self.failure is not None:
                self._pass_through(tid, sig, event)
                continue
            if task is None:
                # A new child reporting before its parent's clone event: wait for the event.
                self.orphans.add(tid)
                continue
            try:
                self._stop(task, sig, event)
            except P.PtraceError as exc:
                if exc.errno != errno.ESRCH:
                    raise
            except Exception as exc:  # a bug of the mirror must not take the program down
                self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        """The mirror itself failed: stop mirroring, say so, and let every task run on to its end.

        The seccomp filter cannot be removed, so the tracer keeps resuming each
        stop: detaching would make every traced call fail with ENOSYS.
        """
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        self.failure = (f"the mirror failed ({type(exc).__name__} at {where}: {exc}); the program ran on "
                        "untraced from there, and the counts stop at that call (please report this)")
        for task in self.tasks.values():
            task.state = RUNNING
            with contextlib.suppress(P.PtraceError):
                P.resume(task.tid)  # those the mirror held stopped; the others are not stopped and refuse
        for image in self.images:
            image.ended = True
            image.close_pagemap()

    def _pass_through(self, tid: int, sig: int, event: int) -> None:
        """After a failure: resume every stop as if nothing were traced (signals delivered, group-stops kept)."""
        if tid not in self.tasks:
            self.tasks[tid] = Task(tid, tid, None, FdTable())  # a new child: followed only to its exit
        try:
            if event == P.PTRACE_EVENT_STOP and sig in _STOP_SIGNALS:
                P.listen(tid)
            elif event == 0 and sig != P.SYSCALL_STOP_SIG:
                P.resume(tid, sig)
            else:
                P.resume(tid)
        except P.PtraceError as exc:
            if exc.errno != errno.ESRCH:
                raise

    def _stop(self, task: Task, sig: int, event: int) -> None:
        if event == P.PTRACE_EVENT_SECCOMP:
            self._entry(task)
        elif sig == P.SYSCALL_STOP_SIG:
            self._exit_stop(task)
        elif event in (P.PTRACE_EVENT_FORK, P.PTRACE_EVENT_VFORK, P.PTRACE_EVENT_CLONE):
            self._cloned(task)
        elif event == P.PTRACE_EVENT_EXEC:
            self._exec(task)
        elif event == P.PTRACE_EVENT_EXIT:
            self._exiting(task)
        elif event == P.PTRACE_EVENT_STOP:
            if task.state == NEW:
                task.state = RUNNING
                P.resume(task.tid)
            elif sig in _STOP_SIGNALS:
                P.listen(task.tid)
            else:
                P.resume(task.tid, to_exit=task.state in (IN_MEMORY, IN_DESCRIPTOR, IN_PROCESS))
        else:
            # A signal on its way to the tracee: pass it on.
            P.resume(task.tid, sig, to_exit=task.state in (IN_MEMORY, IN_DESCRIPTOR, IN_PROCESS))

    # --- call entry ---------------------------------------------------------------------------------------------

    def _entry(self, task: Task) -> None:
        info = P.syscall_info(task.tid)
        name = NAME.get(info.nr)
        if name is None or (task.image is None and name not in ("execve", "execveat")):
            P.resume(task.tid)
            return
        call = Call(name, info.args, task.tid)
        task.call = call
        if name == "ioctl" and (call.args[1] & 0xFFFFFFFF) == USERFAULTFD_IOC_NEW:
            name = call.name = "userfaultfd"
        if name in DESCRIPTOR_CALLS:
            self._descriptor_entry(task, call)
        elif name in PROCESS_CALLS:
            self._process_entry(task, call)
        else:
            self._memory_entry(task, call)

    def _descriptor_entry(self, task: Task, call: Call) -> None:
        fdt = task.fdt
        if call.name == "close":
            fdt.close(call.sarg(0))
            P.resume(task.tid)
        elif call.name == "close_range":
            first, last, flags = call.args[0] & 0xFFFFFFFF, call.args[1] & 0xFFFFFFFF, call.args[2]
            if flags & 2 and fdt.users > 1:  # CLOSE_RANGE_UNSHARE
                self._unshare_files(task)
            if not flags & 4:  # CLOSE_RANGE_CLOEXEC only marks them
                task.fdt.close_range(first, last)
            P.resume(task.tid)
        elif call.name != "userfaultfd" and self.open_files is not None and not self.uffds:
            task.call = None  # with kcmp telling open files apart, the tables follow only userfaultfds: none yet
            P.resume(task.tid)
        else:
            task.state = IN_DESCRIPTOR
            P.resume(task.tid, to_exit=True)

    def _unshare_files(self, task: Task) -> None:
        task.fdt.users -= 1
        task.fdt = task.fdt.copy()
        task.fdt.users = 1

    def _memory_entry(self, task: Task, call: Call) -> None:
        image = task.image
        assert image is not None
        self.arguments.read(task.tid, task.tgid, task.fdt, call)
        target = uffd_target(call)
        if target is not None and id(target) in self.by_mm:
            image = self.by_mm[id(target)]
        call.data["image"] = image
        if image.holder is not None and image.holder != task.tid:
            task.state = DEFERRED
            image.waiting.append(task.tid)
            return
        self._start_memory(task, image)

    def _start_memory(self, task: Task, image: Image) -> None:
        call = task.call
        assert call is not None
        image.holder = task.tid
        task.state = IN_MEMORY
        self._reap_userfaultfds()
        if call.name in ("mlockall", "munlockall", "prctl"):
            image.refresh_all()
        else:
            # Unmapping merges nothing: only the page state of what it splits matters, not its neighbours'.
            image.refresh(touched_ranges(call), neighbours=call.name != "munmap")
        if self._unwatched(image, call) and self._apply_at_entry(task, image, call):
            return
        P.resume(task.tid, to_exit=True)

    def _unwatched(self, image: Image, call: Call) -> bool:
        """Whether ``call`` can be mirrored at its entry, saving the exit stop.

        Only where nothing needs the kernel's result: no comparison is due, the model predicts the result
        (addresses included), and the address space has one task, so no other call on it can come between
        this entry and the kernel's taking the mmap lock.  A wrong prediction still shows, as a layout
        divergence at the next comparison; ``--check every`` stops at every exit and compares every result.
        """
        every = self.options.every
        if every and image.since_check + 1 >= every:
            return False
        if len(image.users) != 1 or image.ended or self.uffds:
            # A userfaultfd lets another process make calls on this address space.
            return False
        if call.name == "madvise":
            return (call.args[2] & 0xFFFFFFFF) in ONE_STOP_ADVICE
        return call.name in ONE_STOP_CALLS

    def _apply_at_entry(self, task: Task, image: Image, call: Call) -> bool:
        """Let the task run through ``call`` (PTRACE_CONT) and mirror it meanwhile; False if it needs the exit stop.

        The page state is read first, while the task is stopped; the model
        then runs while the kernel makes the call (the tracer has the
        task's address space to itself until its next stop).
        """
        if call.data.get("unreadable") or (call.name == "mmap" and unmodelled_mmap(call) is not None):
            return False
        image.refresh(predicted_ranges(image, call))
        task.state = RUNNING
        task.call = None
        P.resume(task.tid)
        run(image, call)  # Unmodelled only as a bug: these calls' refusals are known from their arguments
        image.mirrored(call)
        self._release(image)
        return True

    def _process_entry(self, task: Task, call: Call) -> None:
        name = call.name
        image = task.image
        if name in ("execve", "execveat"):
            sole = image is not None and all(
                self.tasks[t].tgid == task.tgid for t in image.users if t in self.tasks)
            # The address space ends here if the exec succeeds: read it while it still exists.
            late = self._last_look(image, task.tid) if image and sole and exec_target_exists(task.tid, call) else ""
            task.state = IN_PROCESS
            P.resume(task.tid, to_exit=True)
            if image is not None and late:
                self._check_late(image, late)
            return
        if name == "clone":
            flags = call.args[0]
        elif name == "clone3":
            try:
                flags = int.from_bytes(P.read_memory(task.tid, call.args[0], 8), "little")
            except OSError:
                flags = 0
        elif name == "vfork":
            flags = CLONE_VM | CLONE_VFORK
        else:
            flags = 0
        call.data["flags"] = flags
        assert image is not None
        if not flags & CLONE_VM:
            # fork copies anon_vmas: the page state must be right everywhere. It is a memory call.
            if image.holder is not None and image.holder != task.tid:
                task.state = DEFERRED
                image.waiting.append(task.tid)
                return
            image.holder = task.tid
            image.refresh_all()
        task.state = IN_PROCESS
        P.resume(task.tid, to_exit=True)

    # --- call exit ------------------------------------------------------------------------------------------------

    def _exit_stop(self, task: Task) -> None:
        call = task.call
        state = task.state
        task.state = RUNNING
        if call is None or state not in (IN_MEMORY, IN_DESCRIPTOR, IN_PROCESS):
            P.resume(task.tid)
            return
        info = P.syscall_info(task.tid)
        if info.op == P.OP_EXIT:
            call.err = -info.rval if info.is_error else 0
            call.ret = info.rval & ((1 << 64) - 1) if not info.is_error else -1
        if state == IN_MEMORY:
            self._finish_memory(task, call)
        elif state == IN_DESCRIPTOR:
            self._finish_descriptor(task, call)
        else:
            image = task.image
            if image is not None and image.holder == task.tid:
                self._release(image)
        task.call = None
        P.resume(task.tid)

    def _finish_descriptor(self, task: Task, call: Call) -> None:
        if call.err:
            return
        fdt = task.fdt
        name = call.name
        if name in ("dup", "fcntl"):
            fdt.dup(call.sarg(0), call.ret)
        elif name in ("dup2", "dup3"):
            fdt.dup(call.sarg(0), call.sarg(1))
        elif name == "userfaultfd":
            handle = Handle()
            handle.mm = task.image.mm if task.image is not None else None
            fdt.install(call.ret, handle)
            self.uffds += 1

    def _finish_memory(self, task: Task, call: Call) -> None:
        image = call.data.get("image")
        assert isinstance(image, Image)
        try:
            if image.ended:
                return
            image.refresh(result_ranges(call))
            every = self.options.every
            due = bool(every) and image.since_check + 1 >= every
            # The model's VMAs around the call, kept for the report only when a comparison follows.
            before = before_call(image.mm, call) if due else None
            try:
                if call.data.get("unreadable"):
                    raise Unmodelled("arguments could not be read")
                model_ret, model_err = run(image, call)
            except Unmodelled:
                image.stats.unmodelled += 1
                self._check(image, task.tid, call, quiet=True)
                return
            image.mirrored(call)
            mismatch = self._result_mismatch(call, model_ret, model_err)
            if mismatch is not None or due:
                self._check(image, task.tid, call, result=mismatch, before=before)
            if call.name == "brk" and mismatch is not None:
                image.mm.brk = call.ret  # brk returns the kernel's break: /proc does not show it to repair from
        finally:
            self._release(image)

    @staticmethod
    def _result_mismatch(call: Call, model_ret: int | None, model_err: int) -> str | None:
        if call.err or model_err:
            if call.err != model_err:
                model = _errtext(model_err) or hex(model_ret or 0)
                return f"the kernel returned {call.result_text()}, the model {model}"
            return None
        if call.name in ("mmap", "mremap", "brk") and model_ret != call.ret:
            return f"the kernel returned {call.ret:#x}, the model {(model_ret or 0):#x}"
        return None

    def _live_files(self) -> tuple[set[int], int]:
        """The ids of the Files a model VMA or a call in flight maps, and how many VMAs were looked at."""
        images = [image for image in self.images if not image.ended]
        live = {id(v.file) for image in images for v in image.mm.vmas if v.file is not None}
        for task in self.tasks.values():
            if task.call is not None and "file" in task.call.data:
                live.add(id(task.call.data["file"]))
        return live, sum(len(image.mm.vmas) for image in images)

    def _reap_userfaultfds(self) -> None:
        """Forget the userfaultfds the program closed since (close is not stopped on); see fds.reap_userfaultfds."""
        if not self.uffds or self.open_files is None:
            return  # none to forget, or every close is stopped on
        tables: dict[int, tuple[FdTable, int]] = {}
        for task in self.tasks.values():
            tables.setdefault(id(task.fdt), (task.fdt, task.tid))
        reap_userfaultfds(tables.values())

    def _release(self, image: Image) -> None:
        image.holder = None
        while image.waiting:
            tid = image.waiting.popleft()
            task = self.tasks.get(tid)
            if task is None or task.state != DEFERRED or task.call is None:
                continue
            if task.call.name in PROCESS_CALLS:
                image.holder = tid
                image.refresh_all()
                task.state = IN_PROCESS
                P.resume(tid, to_exit=True)
            else:
                self._start_memory(task, image)
            return

    # --- comparing ---------------------------------------------------------------------------------------------------

    def _kernel_text(self, image: Image, tid: int) -> str | None:
        """The smaps text of ``image``, through ``tid`` or another task using it (None: none can show it)."""
        for candidate in (tid, *sorted(image.users)):
            with contextlib.suppress(OSError):
                return read_smaps_text(candidate)
        return None

    def _kernel_layout(self, image: Image, tid: int) -> list[ProcVma] | None:
        text = self._kernel_text(image, tid)
        try:
            return None if text is None else smaps_vmas(text)
        except ProcImportError:
            return None

    def _check(self, image: Image, tid: int, call: Call | None, *, result: str | None = None,
               quiet: bool = False, before: Before | None = None, kernel: list[ProcVma] | None = None) -> None:
        """Compare ``image`` with the kernel (or with ``kernel``, read earlier); count agreement or record a
        divergence, then repair the model."""
        late = kernel is not None
        if kernel is None:
            kernel = self._kernel_layout(image, tid)
            if kernel is None:
                return
        follow_stack_growth(image.mm, kernel)
        model = model_entries(image.mm, image.ids, kernel)
        mismatch = compare(kernel, model)
        stats = image.stats
        if not quiet:
            stats.checks += 1
            if mismatch is None and result is None:
                stats.agreed += image.since_check
            else:
                what = call.describe() if call is not None else "(end of process)"
                if mismatch is not None:
                    div = Divergence(what, "layout", mismatch.first, mismatch.kernel, mismatch.model)
                    if result is not None:
                        div.detail = result + "; " + div.detail
                else:
                    assert result is not None
                    div = Divergence(what, "result", result)
                if before is not None:
                    div.before = [_vma_line(v, image) for v in before.vmas]
                div.context = (call, before)
                stats.divergences.append(div)
            image.since_check = 0
        if mismatch is not None:
            resync(image.mm, kernel, mismatch.lo, mismatch.hi, self.files, None if late else image.pagemap)

    def _last_look(self, image: Image, tid: int) -> str:
        """The address space may be about to go: bring its page state up to date, and return its smaps text
        ("" when no comparison is due) for :meth:`_check_late` once the task runs on: parsing and comparing
        need nothing more from the process, so they can overlap its exit or exec."""
        if image.ended:
            return ""
        self._reap_userfaultfds()
        text = None
        if image.since_check or (self.options.every == 0 and image.stats.calls):
            text = self._kernel_text(image, tid)
        image.refresh_all()
        return text or ""

    def _check_late(self, image: Image, text: str) -> None:
        with contextlib.suppress(ProcImportError):
            self._check(image, 0, None, kernel=smaps_vmas(text))

    def _end(self, image: Image, tid: int) -> str:
        """The address space is about to go: a last look (its smaps text), then it is closed for good."""
        text = self._last_look(image, tid)
        image.ended = True
        image.close_pagemap()
        return text

    # --- processes ---------------------------------------------------------------------------------------

    def _cloned(self, task: Task) -> None:
        call = task.call
        new_tid = P.event_msg(task.tid)
        flags = int(call.data.get("flags", 0)) if call is not None else 0
        image = task.image
        assert image is not None
        fdt = task.fdt if flags & CLONE_FILES else task.fdt.copy()
        fdt.users += 1
        tgid = task.tgid if flags & CLONE_THREAD else new_tid
        # The kernel's copy is made: the parent runs on (its exit stop would tell nothing) while the model
        # makes its own; the parent's next memory call waits for the tracer, which finishes this first.
        task.state = RUNNING
        task.call = None
        P.resume(task.tid)
        if flags & CLONE_VM:
            child_image = image
        else:
            child_image = Image(image.space.fork(), new_tid, image.program, self.files, image.name)
            child_image.ids.learnt.update(image.ids.learnt)  # the child maps the same shmem objects
            self._register(child_image, new_tid)
            if image.holder == task.tid:
                self._release(image)
        child_image.users.add(new_tid)
        child = Task(new_tid, tgid, child_image, fdt, state=NEW)
        self.tasks[new_tid] = child
        if child_image is not image and self.options.every:
            self._check(child_image, new_tid, call)
        if new_tid in self.orphans:
            self.orphans.discard(new_tid)
            child.state = RUNNING
            P.resume(new_tid)

    def _register(self, image: Image, tid: int) -> None:
        self.images.append(image)
        self.by_mm[id(image.mm)] = image
        image.open_pagemap(tid)

    def _exec(self, task: Task) -> None:
        former = P.event_msg(task.tid)
        tid = task.tid
        if former != tid and former in self.tasks:
            # A non-leader thread exec'd: it carries on under the leader's id.
            task = self.tasks.pop(former)
            task.tid = tid
            self.tasks[tid] = task
        old = task.image
        if old is not None:
            for t in [t for t in old.users if t in self.tasks and self.tasks[t].tgid == task.tgid]:
                old.users.discard(t)
            if not old.users and not old.ended:
                old.ended = True
                old.close_pagemap()
            if old.holder == tid:
                self._release(old)
        if task.fdt.users > 1:
            self._unshare_files(task)
        if task.fdt.handles:  # often empty: with kcmp, the tables follow userfaultfds only
            task.fdt.keep_only(open_fds(tid))
        # The exec is done: its exit stop would tell nothing.  Unless a comparison follows, the new
        # program starts while the tracer imports it: its layout cannot change before its first memory
        # call, which waits for the tracer (only a fault can grow the stack, which comparisons follow).
        task.state = RUNNING
        task.call = None
        if not self.options.every:
            P.resume(tid)
        task.image = None
        try:
            space = AddressSpace.from_mm(from_pid(tid, self.files))
        except ProcImportError:
            pass  # gone already, or unreadable: not followed
        else:
            image = task.image = Image(space, tid, _program_name(tid), self.files, old.name if old else None)
            image.users.add(tid)
            self._register(image, tid)
            if self.options.every:
                self._check(image, tid, None, quiet=True)
        if self.options.every:
            P.resume(tid)

    def _exiting(self, task: Task) -> None:
        image = task.image
        late = ""
        if image is not None:
            image.users.discard(task.tid)
            if image.holder == task.tid:
                self._release(image)
            if task.tid in image.waiting:
                image.waiting.remove(task.tid)
            if not image.users:
                late = self._end(image, task.tid)
        P.resume(task.tid)
        if image is not None and late:
            self._check_late(image, late)

    def _died(self, tid: int, status: int) -> None:
        task = self.tasks.pop(tid, None)
        if tid == self.root:
            self.exit_status = os.waitstatus_to_exitcode(status)
        if task is None:
            return
        if tid == task.tgid and self.open_files is not None:
            self.open_files.forget(tid)
        image = task.image
        if image is not None:
            image.users.discard(tid)
            if image.holder == tid:
                self._release(image)
            if not image.users and not image.ended:
                image.ended = True
                image.close_pagemap()
        task.fdt.users -= 1
        if task.fdt.users <= 0:
            task.fdt.close_all()


def _errtext(code: int) -> str:
    return f"-1 {errno.errorcode.get(code, code)}" if code else ""


def _program_name(tid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{tid}/exe"))
    except OSError:
        return "?"


def _vma_line(vma: Vma, image: Image) -> str:
    ident = image.ids.of(vma) or ("??", -1)
    offset = vma.pgoff << C.PAGE_SHIFT if ident[1] else 0
    pv = ProcVma(vma.start, vma.end, perms(vma), offset, ident[0], ident[1], path_of(vma),
                 mnemonics(vma.vm_flags))
    extra = f"  anon_vma={vma.anon_vma}" if vma.anon_vma is not None else ""
    return pv.line() + extra


def trace(argv: list[str], options: Options | None = None) -> TraceResult:
    """Trace ``argv`` to its end and return what the mirror found."""
    return Tracer(argv, options).run()
