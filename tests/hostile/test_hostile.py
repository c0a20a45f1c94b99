"""Hostile programs on the host kernel: bounded time, memory and tasks, a clear report, nothing left behind.

The corpus (``tests/hostile/*.json``) runs once, in a subprocess, inside a
4 GiB memory cgroup when the host lets us make one (the issue's bar: the whole
corpus passes under a 4 GiB limit), with its own temporary directory.  Each
program then gets a test of its outcome; the session gets tests that the
subprocess survived, stayed under the limit, and left no file, process or
cgroup behind.  ``test_kill_*`` stop a running ``vmasim run --kernel`` with
SIGTERM and SIGKILL and check the same.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kernelhelpers import executor_processes

import vmasim
from vmasim.kernel.cgroup import Limits, open_caps

pytestmark = pytest.mark.kernel

HERE = Path(__file__).parent
NAMES = sorted(p.stem for p in HERE.glob("*.json"))
TIMEOUT = 20.0  # per program, as run_corpus.py is told
TOTAL_LIMIT = 4 << 30
SRC = str(Path(vmasim.__file__).resolve().parents[1])

MEMORY = "memory"
#: name -> (kind, op path or a regex the op path must match); kind "report" means a full report,
#: "report|memory" either (file pages on disk are reclaimed by writeback, but not on a tmpfs /tmp,
#: and the RSS watchdog of a host without memory cgroups counts them).
EXPECTED: dict[str, tuple[str, str | None]] = {
    "anon-write-touch-64g": (MEMORY, "1"),
    "mlock-64g": (MEMORY, "1"),
    "mmap-populate-16g": (MEMORY, "0"),
    "mlockall-future-then-map-16g": (MEMORY, "1"),
    "madvise-populate-write-16g": (MEMORY, "1"),
    "memfd-8g-touched": (MEMORY, "2"),
    "sbrk-16g-touched": (MEMORY, "1"),
    "mremap-grow-16g-touched": (MEMORY, "2"),
    "fork-chain-256m-each": (MEMORY, r"2(\.2)*(\.[01])?"),
    "fork-cow-600m-rewritten": (MEMORY, "2.0"),
    "pad-then-fork-nest-60": (MEMORY, r"1(\.0)*"),
    "fork-nest-60-cap-32": ("tasks", "0" + ".0" * 31),
    "forks-3000-sequential": ("report", None),
    "anon-name-300000": ("report", None),
    "sparse-file-1t-touched": ("report|memory", r"2"),
    "uffd-300-then-mlock": ("uffd", "302"),
    "uffd-300-event-fork": ("uffd", "302"),
    "munmap-executor-text": ("crash", "1"),
    "mprotect-executor-text-none": ("crash", "1"),
    "munmap-stack": ("crash", "1"),
    "munmap-everything": ("crash", "0"),
    "mremap-stack-away": ("crash", "0"),
    "fork-child-unmaps-text": ("crash", "2.1"),
    "dontfork-stack-then-fork": ("crash", "1.0"),
    "scribble-executor-memory": ("crash", r"\d+"),
    "dontneed-executor-memory": ("crash", "1"),
}


#: Programs whose memory is the kernel's (VMAs, page tables): only a memory cgroup sees it, so
#: they are not run where the runner falls back to its RSS watchdog.
CGROUP_ONLY = ("pad-then-fork-nest-60",)


def test_every_hostile_program_has_an_expectation() -> None:
    assert len(NAMES) >= 20
    assert set(NAMES) == set(EXPECTED)


def _peak(memdir: Path) -> int | None:
    for name in ("memory.peak", "memory.max_usage_in_bytes"):
        try:
            return int((memdir / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return None


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Run the corpus once; yield its outcomes by name, plus ``_run`` facts about the run."""
    tmp = tmp_path_factory.mktemp("hostile-tmp")
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=SRC)
    cmd = [sys.executable, str(HERE / "run_corpus.py"), "--jobs", "2", "--timeout", str(TIMEOUT)]
    # The whole run in one memory cgroup of 4 GiB: the shell joins it, then becomes Python.
    outer = open_caps(Limits(memory=TOTAL_LIMIT, tasks=2000))
    joins = [a.split("=", 1)[1] for a in outer.args if a.startswith("join=")]
    probe = open_caps(Limits())  # what the runner will use inside
    if probe.mechanism == "watchdog":
        cmd += [arg for name in CGROUP_ONLY for arg in ("--skip", name)]
    probe.close()
    if joins:
        script = 'for f in "$@"; do echo $$ > "$f" || exit 97; done; exec ' + " ".join(map(repr, cmd))
        cmd = ["sh", "-c", script, "sh", *joins]
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    facts: dict[str, Any] = {
        "returncode": proc.returncode,
        "stderr": proc.stderr[-2000:],
        "seconds": time.monotonic() - start,
        "cgroup": outer.mechanism if joins else None,
        "peak": _peak(outer.dirs[0]) if joins else None,
        "tmp": tmp,
    }
    # Leftovers are judged once everything the run started has had time to go.
    deadline = time.monotonic() + 10
    while executor_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    facts["leftover_processes"] = executor_processes()
    facts["leftover_files"] = sorted(p.name for p in tmp.iterdir())
    facts["leftover_cgroups"] = [sub.name for d in outer.dirs for sub in d.iterdir() if sub.is_dir()]
    outer.close()
    facts["outer_removed"] = all(not d.exists() for d in outer.dirs)
    outcomes: dict[str, Any] = {"_run": facts}
    for line in proc.stdout.splitlines():
        doc = json.loads(line)
        if doc.get("summary"):
            facts["summary"] = doc
        else:
            outcomes[doc["name"]] = doc
    yield outcomes


def test_the_corpus_run_survives_under_4_gib(corpus: dict[str, Any]) -> None:
    run = corpus["_run"]
    assert run["returncode"] == 0, run["stderr"]
    assert "summary" in run
    # Every process the run started (executors, programs, fork children) stayed near one program's cap.
    assert run["summary"]["maxrss_children_kib"] * 1024 <= Limits().memory + (64 << 20)
    if run["cgroup"] is None:
        pytest.skip("no memory cgroup could be made here: the run was not confined to 4 GiB")
    assert run["peak"] is None or run["peak"] <= TOTAL_LIMIT


def test_the_corpus_run_leaves_nothing_behind(corpus: dict[str, Any]) -> None:
    run = corpus["_run"]
    assert run["leftover_files"] == []
    assert run["leftover_processes"] == []
    assert run["leftover_cgroups"] == []
    assert run["outer_removed"]


@pytest.mark.parametrize("name", NAMES)
def test_hostile_program(corpus: dict[str, Any], name: str) -> None:
    got = corpus.get(name)
    if got is None and name in CGROUP_ONLY:
        pytest.skip("needs a memory cgroup: its memory is the kernel's, which the RSS watchdog cannot see")
    assert got is not None, f"{name}: no outcome (the corpus run stopped early?): {corpus['_run']['stderr']}"
    kinds, path = EXPECTED[name]
    assert got["seconds"] < TIMEOUT + 10  # bounded: stopped by a cap or the timeout, never hung
    assert got["kind"] in kinds.split("|"), got.get("message")
    kind = got["kind"]
    if kind == "report":
        assert got["report"]["results"]
        return
    message = got["message"]
    assert "Traceback" not in message and "\n" not in message
    if kind == MEMORY:
        assert re.search(r"stopped: out of memory \(limit (1 GiB|256 MiB)", message), message
    elif kind == "tasks":
        assert "stopped: too many tasks (limit 32)" in message
    elif kind == "uffd":
        assert "would wait forever for a userfaultfd handler" in message
    if path is not None and got["op_path"] is None:
        # Stopped after the last op of a process, while it reported its layout (where a cap hits first
        # depends on the host's memory accounting): the message names that op instead.
        assert message.startswith("after op ") and "while reporting the layout" in message, message
        top = re.match(r"\d+", path)
        assert top is not None and message.split()[2].split(".")[0] == top.group(), message
    elif path is not None:
        assert re.fullmatch(path, got["op_path"]), got["op_path"]
        # the message names the op (a long path is shortened in the message only)
        first = got["op_path"].split(".")[0]
        assert message.startswith(f"op {first}")
    # the results of the ops before the stop are kept
    partial = got["partial"]
    assert partial is not None
    if got["op_path"]:
        top, _, below = got["op_path"].partition(".")
        # stopped in the first process: the ops before it; in a fork child: at least those before the fork
        assert len(partial["results"]) == int(top) if not below else len(partial["results"]) >= int(top)


def test_anon_name_is_answered_by_the_kernel_not_desynchronised(corpus: dict[str, Any]) -> None:
    report = corpus["anon-name-300000"]["report"]
    assert [r["op"] for r in report["results"]] == ["mmap", "prctl", "munmap"]
    assert report["results"][1] == {"op": "prctl", "ret": -1, "errno": "EINVAL"}  # longer than 79 bytes


def test_a_crashing_child_keeps_the_rest_of_the_report(corpus: dict[str, Any]) -> None:
    partial = corpus["fork-child-unmaps-text"]["partial"]
    assert [r["op"] for r in partial["results"]] == ["mmap", "fork", "fork", "mprotect"]
    assert "vmas" in partial  # the parent finished: its layout is there
    assert "stopped" not in partial["children"]["1"]  # the first child finished
    crashed = partial["children"]["2"]
    assert [r["op"] for r in crashed["results"]] == ["munmap"]
    assert "SIGSEGV" in crashed["stopped"]


def _long_running(tmp_path: Path) -> Path:
    """A program that holds a 1 TiB sparse file with data in it, then runs for much longer than a test."""
    ops: list[dict[str, Any]] = [
        {"op": "file", "name": "f", "size": "1024G"},
        {"op": "mmap", "addr": None, "length": "64M", "prot": "rw", "flags": ["shared"], "fd": "f", "as": "a"},
        {"op": "touch", "addr": "a", "length": "64M"},
        {"op": "pad", "headroom": 0},
    ]
    ops += [{"op": "pad", "headroom": 0} for _ in range(20000)]  # each re-reads 65530 lines of maps
    path = tmp_path / "long.json"
    path.write_text(json.dumps({"ops": ops}))
    return path


def _program_fds(pid: int) -> list[str]:
    out = []
    for child in executor_processes():
        if child == pid:
            continue
        try:
            out += [os.readlink(f) for f in Path(f"/proc/{child}/fd").iterdir()]
        except OSError:
            continue
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_kill_of_a_kernel_run_leaves_nothing(tmp_path: Path, sig: signal.Signals) -> None:
    work = tmp_path / "tmp"
    work.mkdir()
    program = _long_running(tmp_path)
    env = dict(os.environ, TMPDIR=str(work), PYTHONPATH=SRC)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmasim", "run", "--kernel", str(program)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Wait until the program holds its file (open, in our temporary directory, never named there).
        deadline = time.monotonic() + 60
        held: list[str] = []
        while time.monotonic() < deadline and proc.poll() is None:
            held = [f for f in _program_fds(proc.pid) if f.startswith(str(work))]
            if held:
                break
            time.sleep(0.05)
        assert held, "the program never opened its file"
        assert all(f.endswith("(deleted)") for f in held)
        time.sleep(0.3)
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 20
    while executor_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert executor_processes() == []
    assert list(work.iterdir()) == []
    from vmasim.kernel.cgroup import _hierarchies

    pattern = re.compile(rf"^vmasim-{proc.pid}-")
    deadline = time.monotonic() + 5
    left: list[str] = ["?"]
    while left and time.monotonic() < deadline:
        left = [d.name for h in _hierarchies() for d in h.path.iterdir() if pattern.match(d.name)]
        time.sleep(0.05)
    assert left == []
