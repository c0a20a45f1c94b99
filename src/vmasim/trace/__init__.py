"""Mirroring real processes on the model, call by call, and checking the mirror against /proc.

``vmasim trace -- CMD`` runs CMD under ptrace and applies to a model address
space every call that changes a real one; at chosen points it compares the
model's VMAs with /proc/PID/smaps.  The design, and why:

**ptrace through ctypes, stops chosen by seccomp.**  A tracer that stops on
every system call from Python is far too slow for gcc or git.  The traced
command installs a seccomp filter (:func:`ptrace.seccomp_filter`, classic BPF
built here) just before its execve, which returns SECCOMP_RET_TRACE only for
the calls the mirror needs (:mod:`syscalls`: memory calls, the descriptor
calls that copy one, clone/fork/vfork/execve) and lets everything else run untouched; the
tracer uses PTRACE_O_TRACESECCOMP and resumes a stopped call with
PTRACE_SYSCALL only to see its result at the exit stop.  The filter is
inherited by every descendant.  python-ptrace was considered: its 0.9.9
release knows neither seccomp stops nor PTRACE_GET_SYSCALL_INFO (one request
for the call number and arguments, one for the result) nor PTRACE_SEIZE's
group-stop reporting, and its debugger loop would have had to be bypassed, so
the part that would have been used is a one-line ctypes call; the binding is
:mod:`ptrace`, about 100 lines over libc.

**One call at a time per address space.**  A task stopped at a memory call's
entry is resumed only when no other call on the same address space is in
flight, so the model sees the calls in the order the kernel took the mmap lock
for them, threads included (:mod:`tracer`).  Threads and vfork children share
one model address space (CLONE_VM); fork copies it with the model's own fork
(anon_vmas become fork children); execve replaces it by an import of
/proc/PID/maps and smaps right after the exec (:mod:`vmasim.procimport`), with
files identified by device and inode and sized by fstat.

**ASLR stays on.**  Hint-less placement depends on mmap_base, which /proc
does not show.  Right after execve the highest VMA below the stack is the
program interpreter (or the vDSO without one), placed top-down from
mmap_base itself, so its end *is* mmap_base; the importer takes it from
there.  ``--no-aslr`` (personality ADDR_NO_RANDOMIZE) is offered for
reproducible addresses, not needed for agreement.

**Descriptors.**  Merging cares which open file (struct file) a mapping
came through, not only which inode.  Neither open nor close is stopped on:
the tracer keeps a duplicate (pidfd_getfd) of each open file the model maps
and asks kcmp(KCMP_FILE) at each mmap whether the descriptor is one of them
(:class:`fds.OpenFiles`); duplicates of files no model VMA maps any more are
closed.  Per-process descriptor tables follow only userfaultfds (through
dup*, fcntl(F_DUPFD*), close_range and close-on-exec, once one exists),
whose last close releases their registrations and is noticed before the next
memory call.  On kernels without pidfd_getfd every close is stopped on and
the tables follow every descriptor.

**One stop where one is enough.**  With ``--check end`` (or between the
points of ``--check N``) a call whose result the model predicts, addresses
included (mmap, munmap, mprotect, brk, munlock, mseal, most madvise advice),
is applied at its entry and the task resumed with PTRACE_CONT, when its
process has a single task (so no other call can slip in between): half the
stops.  The page state is read before the task resumes; the model then runs
while the kernel makes the call.  A wrong prediction still shows, as a layout
divergence at the next comparison; ``--check every`` stops at every exit and
compares every result.  fork, clone and a successful execve have no exit stop
either: their event stop (PTRACE_EVENT_FORK, _EXEC...) tells all.

**Work after the task runs on.**  What only the stopped process can answer
is read while it is stopped; the rest waits until it runs.  The smaps of an
address space about to end (at exit, or at an execve) is read at that stop,
and parsed and compared once the task is on its way out; the import after an
execve is made while the new program starts: its layout cannot change before
its first memory call, which waits for the tracer (a fault can grow its
stack, which comparisons follow).  The model's copy of a forking address
space is made while the parent runs on.

**Page state** decides anon_vma and so merges, but writes are not calls.
Before each call the VMAs it can touch (and their neighbours; every VMA before
a fork) are refreshed from /proc/PID/pagemap, with /proc/kpageflags telling
anonymous pages from the shared zero page: a private writable VMA the model
holds no anon_vma for, with an anonymous page, gets one the way a write fault
would (:meth:`mirror.Image.refresh`).  What stays approximate:

- which of two neighbours was written first (the order of faults between two
  calls is not visible; the model faults them in address order), which
  decides whether the second reuses the first's anon_vma;
- pages written by other threads between the refresh and the call taking the
  mmap lock;
- anon_vmas gained by memory that was written and freed again between two
  calls without a call in between (only possible through MADV_FREE reclaim
  or swap-out and back);
- for an imported address space (exec, ``vmasim import``): fork history,
  anonymous pgoffs moved by mremap, mempolicies and userfaultfd contexts
  (see :mod:`vmasim.procimport`).

**Divergences** are reported with the call, both layouts around it and the
model's layout before the call; the model is then repaired from /proc over
the differing range, so each divergence is counted once.  :mod:`reproduce`
turns a divergence into a program in the JSON format when the format can say
it, checked on the model (and on the kernel runner where available); the
heap, which brk can move only where it is, is rebuilt in the runner's own
heap at the same offsets from the break.  brk has no errno: after a brk whose
result differs, the model takes the kernel's break from the result.  Calls
the model does not implement (SysV shm, mappings of devices and special
files, MAP_32BIT placement) are imported from /proc and counted as
*unmodelled*, not as mirrored.

**Failing cleanly.**  An exception in the mirror (a bug of the model or the
tracer) ends the mirroring, not the program: the seccomp filter cannot be
removed, so the tracer goes on resuming every stop at once until the last
task exits, and the result's ``error`` says what failed where.

Host facts (sysctls, limits, file systems) come from one function,
:func:`vmasim.procimport.process_settings`, and the mapping from real files to
model files from one other, :func:`vmasim.procimport.inode_kind`.
"""

from vmasim.trace.interface import Options, TraceResult
from vmasim.trace.tracer import trace

__all__ = ["Options", "TraceResult", "trace"]
