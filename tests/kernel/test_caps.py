"""The caps' bookkeeping: sizes, limits, the choice of mechanism, stale leftovers (no kernel needed)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from vmasim.kernel.cgroup import Limits, _inside, format_size, open_caps, parse_size, remove_stale


def test_sizes_read_and_print_as_binary_units() -> None:
    assert [parse_size(t) for t in ("4096", "512M", "1G", "1GiB", " 2k ")] == [4096, 512 << 20, 1 << 30, 1 << 30, 2048]
    sizes = [format_size(n) for n in (1 << 30, 1536 << 20, 64 << 20, 4097)]
    assert sizes == ["1 GiB", "1536 MiB", "64 MiB", "4097 bytes"]
    with pytest.raises(ValueError, match="512X"):
        parse_size("512X")


def test_limits_are_checked_and_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Limits() == Limits(memory=1 << 30, tasks=256)
    with pytest.raises(ValueError, match="memory must be at least"):
        Limits(memory=1 << 20)
    with pytest.raises(ValueError, match="tasks must be at least 1"):
        Limits(tasks=0)
    with pytest.raises(TypeError, match="memory must be an int"):
        Limits(memory=1.5e9)  # type: ignore[arg-type]
    monkeypatch.setenv("VMASIM_MEMORY_LIMIT", "256M")
    monkeypatch.setenv("VMASIM_TASK_LIMIT", "9")
    assert Limits.from_env() == Limits(memory=256 << 20, tasks=9)
    assert Limits.from_env(memory=2 << 30) == Limits(memory=2 << 30, tasks=9)
    monkeypatch.setenv("VMASIM_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match=r"\$VMASIM_MEMORY_LIMIT"):
        Limits.from_env()


def test_cgroup_paths_follow_the_mount_root(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert _inside(tmp_path, "/", "/a/b") == tmp_path / "a" / "b"
    # a hierarchy mounted from inside (a container's view): paths are relative to its root
    assert _inside(tmp_path, "/docker/x", "/docker/x/a/b") == tmp_path / "a" / "b"
    assert _inside(tmp_path, "/docker/x", "/elsewhere") is None


def test_without_cgroups_the_cap_is_a_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMASIM_CGROUP", "off")
    caps = open_caps(Limits(memory=64 << 20, tasks=5))
    assert caps.mechanism == "watchdog"
    assert caps.args == ["tasks=5", f"rss={64 << 20}"] and caps.dirs == []


def test_stale_fallback_files_of_dead_runs_are_removed(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])  # a pid that has just gone
    gone.wait()
    stale = tmp_path / f".vmasim-{gone.pid}-7-0"
    live = tmp_path / f".vmasim-{os.getpid()}-7-0"
    other = tmp_path / "keep-me"
    for p in (stale, live, other):
        p.write_text("")
    remove_stale(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


def test_stale_cgroups_of_dead_runs_are_removed() -> None:
    from vmasim.kernel.cgroup import _hierarchies

    gone = subprocess.Popen(["true"])
    gone.wait()
    made = []
    for h in _hierarchies():
        d = h.path / f"vmasim-{gone.pid}-0badcafe"
        try:
            d.mkdir()
        except OSError:
            continue
        made.append(d)
    if not made:
        pytest.skip("no cgroup can be made here")
    remove_stale()
    assert [d for d in made if d.exists()] == []
