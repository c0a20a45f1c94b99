"""The kernel runner's side of the ops added for real traces: SysV segments never outlive a run (killed or
not, with or without an IPC namespace of the program's own), and exec keeps going in the new image."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kernelhelpers import Run

from vmasim.kernel import KernelRunError, run_programs
from vmasim.program import parse_program

pytestmark = pytest.mark.kernel

_SHM_OPS = [{"op": "shmget", "name": "s", "size": 8192}, {"op": "shmat", "shm": "s", "as": "a"},
            {"op": "touch", "addr": "a", "length": 8192}]
# Killed by the runner: mlock faults in a range a userfaultfd handler would have to serve.
_KILLED = [*_SHM_OPS,
           {"op": "mmap", "addr": None, "length": 4096, "prot": "rw", "flags": ["private", "anonymous"], "as": "m"},
           {"op": "userfaultfd", "name": "u"},
           {"op": "uffd_register", "uffd": "u", "addr": "m", "length": 4096, "mode": "missing"},
           {"op": "mlock", "addr": "m", "length": 4096}]


def _segments() -> set[int]:
    lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    return {int(line.split()[1]) for line in lines}


def test_segments_do_not_outlive_a_run() -> None:
    before = _segments()
    ok, killed = run_programs([parse_program({"ops": _SHM_OPS}), parse_program({"ops": _KILLED})])
    assert not isinstance(ok, KernelRunError)
    assert isinstance(killed, KernelRunError) and killed.kind == "uffd"
    assert _segments() <= before


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run without CAP_SYS_ADMIN")
def test_segments_are_removed_by_the_driver_without_a_namespace() -> None:
    # Without CAP_SYS_ADMIN the executor cannot give the program an IPC namespace of its own: the
    # driver removes the segments the program announced, after a normal end and after a kill.
    script = (
        "import json, sys\n"
        "from vmasim.kernel import run_programs, KernelRunError\n"
        "from vmasim.program import parse_program\n"
        "progs = [parse_program({'ops': ops}) for ops in json.loads(sys.argv[1])]\n"
        "print([isinstance(r, KernelRunError) for r in run_programs(progs, jobs=1)])\n"
    )
    import json

    before = _segments()
    env = dict(os.environ, XDG_CACHE_HOME=os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")))
    out = subprocess.run(
        ["setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", sys.executable, "-c", script,
         json.dumps([_SHM_OPS, _KILLED])],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[False, True]"
    assert _segments() <= before


def test_exec_goes_on_in_the_new_image(run: Run) -> None:
    ops: list[dict[str, object]] = []
    for _ in range(20):
        ops += [{"op": "mmap", "addr": "W", "length": 4096, "prot": "r",
                 "flags": ["private", "anonymous", "fixed_noreplace"]}, {"op": "exec"}]
    report = run([*ops, {"op": "fork", "child": [{"op": "exec"}, {"op": "sbrk", "increment": 4096}]}])
    assert all(r["errno"] is None for r in report["results"])
    assert report["vmas"] == []
    assert len(report["children"]["40"]["heap"]) == 1
