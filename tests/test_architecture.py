"""The package's architecture, checked: layer contracts (import-linter), no import cycle, no module too long."""

from __future__ import annotations

import ast
import graphlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
MAX_MODULE_LINES = 700


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "vmasim").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _import_graph() -> dict[str, set[str]]:
    """Module -> the vmasim modules it imports, lazy (function-level) imports included."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vmasim":
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.split(".")[0] == "vmasim"}
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def test_layer_contracts() -> None:
    """The contracts in pyproject.toml ([tool.importlinter]): the core imports nothing above it, and so on."""
    pytest.importorskip("importlinter", reason="import-linter is not installed (pip install -e '.[test]')")
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    res = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True,
                         check=False, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


def test_no_import_cycles() -> None:
    graph = _import_graph()
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:  # pragma: no cover - the failure message
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")
    assert "vmasim.core.mm" in graph and graph["vmasim.cli"]  # the graph is really built


def test_no_module_is_too_long() -> None:
    lengths = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES} == {}
