"""Trace real programs of a Debian machine: agreement with --check every, overhead of --check end.

Run: PYTHONPATH=src python benchmarks/bench_trace.py [--quick] [--json OUT]

For each program: the calls mirrored and the share after which the model's
layout matched the kernel's exactly (``--check every``), every divergence,
and the wall time of ``--check end`` against the untraced program, both
measured in this run, in alternating pairs (see ``_paired``): the ratio is the
median of the pairs' ratios, with its quartiles.  The traced time is the tracer's own
loop from launch to the last exit; the interpreter start of the ``vmasim``
command itself is measured once, separately.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vmasim.trace import Options, trace

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def _workdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="vmasim-bench-trace-"))
    rng = random.Random(1)
    with open(d / "big.txt", "w") as f:
        for _ in range(1_000_000):
            f.write(f"{rng.randrange(10**8):08d} {'x' * rng.randrange(5, 30)}\n")
    (d / "comp.bin").write_bytes((d / "big.txt").read_bytes()[:4_000_000])
    (d / "small.c").write_text("#include <stdio.h>\nint f(int x) { printf(\"%d\", x); return x * 2; }\n")
    shutil.copytree(Path(__file__).resolve().parent.parent / "src", d / "tree")
    (d / "work.js").write_text(
        "let a = []; for (let i = 0; i < 1e6; i++) a.push({i, s: 'x' + i}); console.log(a.length);\n"
        "const wasm = new Uint8Array([0,97,115,109,1,0,0,0,1,7,1,96,2,127,127,1,127,3,2,1,0,7,7,1,3,97,100,100,"
        "0,0,10,9,1,7,0,32,0,32,1,106,11]);\n"
        "WebAssembly.instantiate(wasm).then(r => console.log(r.instance.exports.add(2, 3)));\n"
        "const { Worker } = require('worker_threads');\n"
        "new Worker('let x = []; for (let i = 0; i < 100000; i++) x.push(i);', { eval: true });\n")
    (d / "Work.java").write_text(
        "public class Work { public static void main(String[] a) throws Exception {\n"
        "  java.util.List<byte[]> l = new java.util.ArrayList<>();\n"
        "  for (int i = 0; i < 20000; i++) l.add(new byte[1000 + i % 5000]);\n"
        "  Thread t = new Thread(() -> { long s = 0; for (int i = 0; i < 1000000; i++) s += i; });\n"
        "  t.start(); t.join(); System.out.println(l.size()); } }\n")
    return d


def programs(d: Path, repo: str) -> list[tuple[str, list[str]]]:
    """The programs measured: (label, argv)."""
    return [
        ("python3 -c 'import json, decimal'", [PY, "-c", "import json, decimal"]),
        ("threaded python", [PY, "-c", "import threading\n"
                             "def w(n):\n    x = [bytearray(64) for _ in range(n)]\n"
                             "ts = [threading.Thread(target=w, args=(20000,)) for _ in range(4)]\n"
                             "[t.start() for t in ts]; [t.join() for t in ts]"]),
        ("gcc -c small.c", ["gcc", "-c", str(d / "small.c"), "-o", str(d / "small.o")]),
        ("git status", ["git", "-C", repo, "status", "--short"]),
        ("git log", ["git", "-C", repo, "log", "--oneline", "-n", "300"]),
        ("sort (40 MB)", ["sort", "-o", str(d / "sorted.txt"), str(d / "big.txt")]),
        ("tar czf", ["tar", "czf", str(d / "t.tgz"), "-C", str(d), "tree"]),
        ("perl -e", ["perl", "-e", "my %h; $h{$_} = [1..20] for 1..20000; print scalar(keys %h), qq(\\n)"]),
        ("sh -c fork+exec", ["sh", "-c", "for i in 1 2 3; do ls / >/dev/null; done; (echo x) | cat >/dev/null"]),
        ("xz -T2", ["xz", "-T2", "-3", "-k", "-f", str(d / "comp.bin")]),
        ("zstd -T2", ["zstd", "-T2", "-q", "-f", str(d / "comp.bin"), "-o", str(d / "comp.zst")]),
        ("allocation-heavy python", [PY, "-c", "x = [bytearray(i % 5000) for i in range(100000)]\n"
                                     "d = {i: str(i) * 10 for i in range(200000)}\ndel x\n"
                                     "y = [list(range(i % 300)) for i in range(30000)]"]),
        ("node (WebAssembly, a worker)", ["node", str(d / "work.js")]),
        ("java -XX:+UseZGC Work.java", ["java", "-XX:+UseZGC", str(d / "Work.java")]),
    ]


def _native(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t


def _paired(argv: list[str], reps: int, devnull: int, short: int) -> tuple[float, float, float, tuple[float, float]]:
    """Untraced and ``--check end`` runs in alternating pairs: medians of each, the median of the pairs'
    ratios and its quartiles.

    Each ratio compares two runs made a moment apart: on a shared virtual
    machine, times drift by a third from one minute to the next, which
    best-of-three taken separately turned into ratios 30% apart between two
    runs of the bench.  Programs of under 0.1 s get ``short`` pairs.
    """
    pairs = reps if _native(argv) >= 0.1 else max(reps, short)
    natives, ends, ratios = [], [], []
    for i in range(pairs):
        if i % 2:
            end = trace(argv, Options(check="end", stdout=devnull)).wall
            native = _native(argv)
        else:
            native = _native(argv)
            end = trace(argv, Options(check="end", stdout=devnull)).wall
        natives.append(native)
        ends.append(end)
        ratios.append(end / native)
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return statistics.median(natives), statistics.median(ends), statistics.median(ratios), (quartiles[0], quartiles[2])


def main() -> None:
    """Measure every program and print a table (and optionally the JSON)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one pair of runs each (else 3, 15 for short programs)")
    ap.add_argument("--json", help="write the measurements here")
    ap.add_argument("--repo", default="/work/main")
    args = ap.parse_args()
    d = _workdir()
    reps = 1 if args.quick else 3
    rows = []
    devnull = os.open(os.devnull, os.O_WRONLY)
    for label, argv in programs(d, args.repo):
        if shutil.which(argv[0]) is None:
            print(f"skip {label}: {argv[0]} not installed")
            continue
        every = trace(argv, Options(check="every", stdout=devnull))
        native, end, ratio, spread = _paired(argv, reps, devnull, 1 if args.quick else 15)
        divs = [(i.name, dv.call, dv.kind, dv.detail) for i in every.images for dv in i.stats.divergences]
        unmodelled = sum(i.stats.unmodelled for i in every.images)
        row = {"program": label, "processes": len(every.images), "calls": every.calls, "agreed": every.agreed,
               "unmodelled": unmodelled, "native_s": round(native, 4), "check_end_s": round(end, 4),
               "ratio": round(ratio, 2), "ratio_quartiles": [round(q, 2) for q in spread], "divergences": divs}
        rows.append(row)
        pct = 100.0 * every.agreed / every.calls if every.calls else 100.0
        print(f"{label:28s} procs {len(every.images):3d}  calls {every.calls:5d}  agreed {pct:7.2f}%  "
              f"unmodelled {unmodelled:3d}  native {native:7.3f}s  end {end:7.3f}s  ratio {ratio:5.2f} "
              f"({spread[0]:.2f}-{spread[1]:.2f})")
        for name, call, kind, detail in divs:
            print(f"    {name}: {kind} after {call}: {detail}")
    calls = sum(r["calls"] for r in rows)
    agreed = sum(r["agreed"] for r in rows)
    print(f"TOTAL calls {calls} agreed {agreed} ({100.0 * agreed / max(calls, 1):.2f}%)")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vmasim", "trace", "--", "true"], stdout=subprocess.DEVNULL, check=False)
    print(f"vmasim trace -- true, whole command including interpreter start: {time.perf_counter() - t:.3f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
