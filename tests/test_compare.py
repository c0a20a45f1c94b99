"""vmasim.compare: diff_reports and the ``vmasim compare`` command (with a fake kernel)."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest

import vmasim.compare.command as compare_mod
from vmasim.compare import compare_command, diff_reports, print_side_by_side
from vmasim.program import Program, load_program, parse_program
from vmasim.program.model import run_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
OPS: list[dict[str, Any]] = [
    {"op": "mmap", "addr": "W", "length": "16K", "prot": "rw",
     "flags": ["private", "anonymous", "fixed_noreplace"], "as": "a"},
    {"op": "touch", "addr": "a", "length": "4K"},
    {"op": "mprotect", "addr": "a+0x1000", "length": "4K", "prot": "r"},
    {"op": "memfd", "name": "buf", "size": "16K"},
    {"op": "mmap", "addr": "W+0x8000", "length": "8K", "prot": "rw", "flags": ["shared", "fixed_noreplace"],
     "fd": "buf", "offset": 0},
]


def _report(ops: list[dict[str, Any]] = OPS) -> dict[str, Any]:
    return run_model(parse_program({"ops": ops}))


def test_identical_reports_agree() -> None:
    rep = _report()
    assert diff_reports(rep, copy.deepcopy(rep)) == []


def test_planted_result_difference_comes_first() -> None:
    model = _report()
    kernel = copy.deepcopy(model)
    kernel["vmas"][-1]["perms"] = "r--s"  # a later difference ...
    kernel["results"][2] = {"op": "mprotect", "ret": -1, "errno": "ENOMEM"}  # ... and the first one
    diffs = diff_reports(model, kernel)
    assert diffs[0].startswith("results[2] (mprotect): ret: model 0, kernel -1")
    assert any("errno: model null, kernel ENOMEM" in d for d in diffs)
    assert any("perms: model rw-s, kernel r--s" in d for d in diffs)


def test_vma_field_and_flags_differences() -> None:
    model = _report()
    kernel = copy.deepcopy(model)
    kernel["vmas"][1]["flags"] = [f for f in kernel["vmas"][1]["flags"] if f != "ac"] + ["dd"]
    diffs = diff_reports(model, kernel)
    assert len(diffs) == 1
    assert diffs[0].startswith(f"vma {model['vmas'][1]['start']}: flags:")
    assert "only in the model: ac" in diffs[0] and "only in the kernel: dd" in diffs[0]


def test_flag_order_counts() -> None:
    model = _report()
    kernel = copy.deepcopy(model)
    kernel["vmas"][0]["flags"] = list(reversed(kernel["vmas"][0]["flags"]))
    assert "another order" in diff_reports(model, kernel)[0]


def test_extra_split_is_paired_by_address() -> None:
    model = _report()
    kernel = copy.deepcopy(model)
    i = next(i for i, v in enumerate(kernel["vmas"]) if int(v["end"], 16) - int(v["start"], 16) > 0x1000)
    first = kernel["vmas"][i]
    mid = hex(int(first["start"], 16) + 0x1000)
    kernel["vmas"][i : i + 1] = [{**first, "end": mid}, {**first, "start": mid}]
    diffs = diff_reports(model, kernel)
    assert diffs[0].endswith(f"end: model {first['end']}, kernel {mid}")
    assert diffs[1].startswith(f"vma {mid}: only in the kernel")
    assert len(diffs) == 2  # the VMAs after the split still pair up


def test_hex_case_and_object_rets_are_not_differences() -> None:
    model = _report()
    kernel = copy.deepcopy(model)
    kernel["results"][0]["ret"] = kernel["results"][0]["ret"].upper().replace("0X", "0x")
    kernel["results"][3]["ret"] = 7  # memfd returned an fd: only success matters
    assert diff_reports(model, kernel) == []


def test_missing_results_heap_and_children() -> None:
    model = _report()
    kernel = copy.deepcopy(model)
    kernel["results"].pop()
    kernel["heap"] = [{"start": "+0x0", "end": "+0x1000", "perms": "rw-p", "offset": "0x0", "file": None,
                       "flags": ["rd", "wr"], "policy": "default"}]
    child = copy.deepcopy(model)
    model["children"] = {"5": child}
    kernel["children"] = {"5": {**copy.deepcopy(child), "vmas": []}}
    diffs = diff_reports(model, kernel)
    assert diffs[0].startswith("results[4] (mmap): model ret=")
    assert any(d.startswith("heap +0x0: only in the kernel") for d in diffs)
    assert any(d.startswith("child 5: vma ") and "only in the model" in d for d in diffs)


# --- compare_command ----------------------------------------------------------------------


def _write(tmp_path: Path, name: str, doc: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return str(path)


def _same(program: Program) -> dict[str, Any]:
    return run_model(program)


def _perturbed(program: Program) -> dict[str, Any]:
    rep = copy.deepcopy(run_model(program))
    rep["vmas"][0]["perms"] = "---p"
    return rep


def test_compare_command_agree(tmp_path: Path) -> None:
    out = io.StringIO()
    path = _write(tmp_path, "p.json", {"ops": OPS})
    assert compare_command((path,), kernel=_same, out=out) == 0
    assert out.getvalue().rstrip().endswith("agree")


def test_compare_command_differ(tmp_path: Path) -> None:
    out = io.StringIO()
    good = _write(tmp_path, "p.json", {"ops": OPS})
    assert compare_command((good,), kernel=_perturbed, out=out) == 1
    text = out.getvalue()
    assert "1 difference(s)" in text and "perms: model rw-p, kernel ---p" in text


def test_compare_command_invalid_program_names_op_and_field(tmp_path: Path) -> None:
    out = io.StringIO()
    bad = _write(tmp_path, "bad.json", {"ops": [{"op": "munmap", "addr": "nowhere", "length": "4K"}]})
    good = _write(tmp_path, "p.json", {"ops": OPS})
    assert compare_command((bad, good), kernel=_same, out=out) == 2
    text = out.getvalue()
    assert "op 0 (munmap)" in text and "'addr'" in text
    assert "agree" in text  # the valid program is still compared


def test_compare_command_kernel_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compare_mod, "_kernel_runner", lambda: (None, "no C compiler"))
    out = io.StringIO()
    path = _write(tmp_path, "p.json", {"ops": OPS})
    assert compare_command((path,), out=out) == 2
    assert "cannot run on the host kernel: no C compiler" in out.getvalue()


def test_compare_command_runner_failure(tmp_path: Path) -> None:
    def broken(program: Program) -> dict[str, Any]:
        raise RuntimeError("timed out after 10s")

    out = io.StringIO()
    path = _write(tmp_path, "p.json", {"ops": OPS})
    assert compare_command((path,), kernel=broken, out=out) == 2
    assert "the kernel runner failed: timed out" in out.getvalue()


def test_compare_command_rich_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "p.json", {"ops": OPS})
    assert compare_command((path,), kernel=_perturbed) == 1
    text = capsys.readouterr().out
    assert "model" in text and "kernel" in text
    marked = [line for line in text.splitlines() if "> " in line and "---p" in line]
    assert marked, text  # the first differing line carries the marker
    assert "[rd wr mr mw me ac]" in text  # flags are shown literally, not eaten as markup


def test_compare_quiet_and_json(tmp_path: Path) -> None:
    good = _write(tmp_path, "p.json", {"ops": OPS})
    out = io.StringIO()
    assert compare_command((good,), kernel=_perturbed, out=out, quiet=True) == 1
    text = out.getvalue()
    assert "| kernel" not in text and "difference(s):" in text  # no layout table, the differences
    out = io.StringIO()
    assert compare_command((good,), kernel=_perturbed, out=out, as_json=True) == 1
    doc = json.loads(out.getvalue())
    assert doc["status"] == 1 and doc["programs"][0]["status"] == "differ"
    assert doc["programs"][0]["differences"]


def test_compare_fits_an_80_column_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    prog = load_program(str(EXAMPLES / "01-seed-split-and-merge.json"))
    model = run_model(prog)
    kernel = copy.deepcopy(model)
    kernel["vmas"][0]["flags"] = [*kernel["vmas"][0]["flags"], "lo"]
    print_side_by_side("seed", prog, model, kernel, width=80)
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any(line.startswith("- 7e0000000000") for line in lines)
    assert any(line.startswith("+ 7e0000000000") and "lo]" in line for line in lines)
