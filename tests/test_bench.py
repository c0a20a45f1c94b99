"""``vmasim bench`` works: both sides measured (where the kernel can be used), reported as text and JSON.

No timing is asserted: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from vmasim import bench
from vmasim.cli import main


def test_quick_bench_measures_every_call_on_both_sides() -> None:
    report = bench.run([10, 40], quick=True)
    calls = [name for w in bench.WORKLOADS for name in w.names if name] + ["fork, untouched", "fork, touched"]
    for n in (10, 40):
        assert sorted(r.call for r in report.rows if r.n == n) == sorted(calls)
    assert all(r.model_us > 0 for r in report.rows)
    if report.kernel_reason is None:
        assert all(r.kernel_us is not None and r.kernel_us > 0 and r.ratio is not None for r in report.rows)
    assert set(report.scaling()) == set(calls) - {"fork, untouched", "fork, touched"}
    assert report.memory["n"] == 40 and report.memory["bytes_per_vma"] > 0
    assert report.build["n"] == 40 and report.build["model_s"] > 0
    assert (report.build["kernel_s"] is not None) == (report.kernel_reason is None)
    text = bench.format_report(report)
    assert "N = 10 VMAs" in text and "N = 40 VMAs" in text and "bytes per VMA" in text
    assert "building 40 VMAs by hint-less mmap (none merging): the model " in text
    assert "model cost at 40 VMAs over its cost at 10" in text


def test_without_the_kernel_only_the_model_is_measured_and_the_report_says_why(monkeypatch) -> None:
    monkeypatch.setattr(bench, "kernel_unavailable", lambda: "not on this machine")
    report = bench.run([10], quick=True)
    assert report.rows and all(r.kernel_us is None and r.ratio is None for r in report.rows)
    assert "kernel side: not measured: not on this machine" in bench.format_report(report)
    assert report.to_json()["kernel"] == {"available": False, "reason": "not on this machine"}


def test_cli_bench_prints_json() -> None:
    res = CliRunner().invoke(main, ["bench", "--quick", "--sizes", "10", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["format"] == "vmasim-bench/1" and doc["sizes"] == [10]
    assert {row["workload"] for row in doc["rows"]} == {w.key for w in bench.WORKLOADS} | {"fork"}


@pytest.mark.parametrize("sizes", ["10,x", "1", ""])
def test_cli_bench_rejects_bad_sizes(sizes: str) -> None:
    res = CliRunner().invoke(main, ["bench", "--sizes", sizes])
    assert res.exit_code == 2 and "--sizes" in res.stderr
