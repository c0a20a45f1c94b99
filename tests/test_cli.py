"""The vmasim command: run, run --json, explain, and program validation errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from vmasim.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_run_seed_example_prints_calls_and_layout() -> None:
    res = CliRunner().invoke(main, ["run", str(EXAMPLES / "01-seed-split-and-merge.json")])
    assert res.exit_code == 0, res.output
    assert "[1] mprotect(addr=a+0x2000, length=8K, prot=r) = 0" in res.output
    assert "7e0000000000-7e0000008000 rw-p" in res.output


def test_run_json_is_the_layout_report() -> None:
    res = CliRunner().invoke(main, ["run", "--json", str(EXAMPLES / "01-seed-split-and-merge.json")])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert set(report) == {"results", "vmas", "heap", "children"}
    assert report["results"][0] == {"op": "mmap", "ret": "0x7e0000000000", "errno": None}
    assert report["results"][4] == {"op": "touch", "pages": 8, "fault": None}
    assert [(v["start"], v["end"]) for v in report["vmas"]] == [
        ("0x7e0000000000", "0x7e0000008000"),
        ("0x7e0000100000", "0x7e0000108000"),
    ]
    assert report["vmas"][0]["flags"] == ["rd", "wr", "mr", "mw", "me", "ac"]


def test_invalid_program_names_op_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"ops": [{"op": "mmap", "addr": None, "length": "4K", "prot": "rw",
                                        "flags": ["private", "anonymous"]},
                                       {"op": "mprotect", "addr": "b", "length": "4K", "prot": "r"}]}))
    res = CliRunner().invoke(main, ["run", str(bad)])
    assert res.exit_code != 0
    assert "op 1 (mprotect), field 'addr'" in res.output
    assert "used before it is bound" in res.output


def test_explain_says_why() -> None:
    res = CliRunner().invoke(main, ["explain", str(EXAMPLES / "06-vm-account.json")])
    assert res.exit_code == 0, res.output
    assert "vm_flags differ in VM_ACCOUNT" in res.output


def test_explain_covers_fork_children_and_says_each_reason_once(tmp_path: Path) -> None:
    prog = tmp_path / "p.json"
    prog.write_text(json.dumps({"ops": [
        {"op": "memfd", "name": "m", "size": "64K"},
        {"op": "mmap", "addr": "W", "length": "8K", "prot": "rw", "flags": ["shared", "fixed"], "fd": "m"},
        {"op": "mmap", "addr": "W+0x2000", "length": "8K", "prot": "rw", "flags": ["shared", "fixed"], "fd": "m",
         "offset": "16K"},
        {"op": "fork", "child": [{"op": "mprotect", "addr": "W", "length": "4K", "prot": "r"}]}]}))
    res = CliRunner().invoke(main, ["explain", str(prog)])
    assert res.exit_code == 0, res.output
    assert "--- the child of fork op 3" in res.output
    parent, child = res.output.split("--- the child of fork op 3")
    assert parent.count("pgoff not contiguous") == 1  # asked both ways, said once
    assert "vm_flags differ in VM_WRITE" in child and child.count("pgoff not contiguous") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jobs", "0"], "0 is not in the range x>=1"),
        (["--jobs", "-3"], "-3 is not in the range x>=1"),
        (["--jobs", "100000"], "100000 is more than the"),
        (["--count", "-5"], "-5 is not in the range x>=0"),
    ],
)
def test_fuzz_rejects_bad_counts_and_jobs(args: list[str], message: str) -> None:
    res = CliRunner().invoke(main, ["fuzz", *args])
    assert res.exit_code == 2
    assert message in res.output
