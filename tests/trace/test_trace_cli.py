"""The trace, import and explain --pid commands."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from click.testing import CliRunner

from vmasim.cli import main

DATA = Path(__file__).parent / "data"


def test_trace_json_has_totals_and_processes(traceable: None, tmp_path: Path) -> None:
    true = shutil.which("true")
    assert true is not None
    res = CliRunner().invoke(main, ["trace", "--json", "--check", "every", "--out", str(tmp_path), "--", true])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["calls"] > 0 and doc["agreed"] == doc["calls"]
    proc = doc["processes"][0]
    assert proc["program"] == os.path.basename(os.path.realpath(true))
    assert proc["calls"] == doc["calls"] and proc["divergences"] == []
    assert proc["final"]["vmas"] > 0 and proc["final"]["reasons"]
    assert json.loads((tmp_path / "trace.json").read_text())["calls"] == doc["calls"]


def test_trace_text_summary(traceable: None) -> None:
    res = CliRunner().invoke(main, ["trace", "--", "sh", "-c", "true"])
    assert res.exit_code == 0, res.output
    assert "agreed (100.00%)" in res.output
    assert "adjacent pairs did not merge" in res.output


def test_trace_rejects_a_bad_check() -> None:
    res = CliRunner().invoke(main, ["trace", "--check", "sometimes", "--", "true"])
    assert res.exit_code == 2


def test_trace_of_a_missing_command(traceable: None) -> None:
    res = CliRunner().invoke(main, ["trace", "--", "/nonexistent/program"])
    assert res.exit_code == 2
    assert "cannot run" in res.output


def test_import_a_saved_file() -> None:
    res = CliRunner().invoke(main, ["import", str(DATA / "cat.smaps")])
    assert res.exit_code == 0, res.output
    assert "37 VMAs; mmap_base 0x7ffff7fff000" in res.output
    res = CliRunner().invoke(main, ["import", "--json", str(DATA / "cat.maps")])
    assert res.exit_code == 0
    assert len(json.loads(res.output)["vmas"]) == 37


def test_import_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("not maps\n")
    assert CliRunner().invoke(main, ["import", str(bad)]).exit_code == 2


def test_explain_pid() -> None:
    res = CliRunner().invoke(main, ["explain", "--pid", str(os.getpid())])
    assert res.exit_code == 0, res.output
    assert "adjacent pairs that did not merge, by reason" in res.output
    assert "different protections" in res.output


def test_explain_needs_a_program_or_a_pid() -> None:
    assert CliRunner().invoke(main, ["explain"]).exit_code == 2
