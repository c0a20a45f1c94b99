"""The malformed-program corpus: every file in tests/bad_input/ ends in exactly one ``invalid program`` line.

Each ``NAME.json`` (JSON or not: binary, non-UTF-8, truncated...) has a
``NAME.expect`` holding the message after ``invalid program: PATH: ``.  Inputs
too big to commit (deep, huge, many ops) are written at test time.  Every
input goes through ``vmasim run``, ``explain``, ``view`` and ``compare`` (which
validate before running anything), some through a real ``vmasim`` process
and standard input too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from vmasim.cli import main
from vmasim.compare import compare_command
from vmasim.program.parse import MAX_FORK_DEPTH

CORPUS = Path(__file__).resolve().parent / "bad_input"
CASES = sorted(p.stem for p in CORPUS.glob("*.json"))
SRC = Path(__file__).resolve().parent.parent / "src"


def expected(name: str) -> str:
    return (CORPUS / f"{name}.expect").read_text(encoding="utf-8").rstrip("\n")


def test_the_corpus_is_complete() -> None:
    assert len(CASES) >= 60
    assert sorted(p.stem for p in CORPUS.glob("*.expect")) == CASES
    kinds = [(CORPUS / f"{n}.json").read_bytes() for n in CASES]
    assert any(not _utf8(b) for b in kinds), "binary and non-UTF-8 inputs belong in the corpus"


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_cli(path: Path, message: str, commands: tuple[str, ...] = ("run", "explain", "view")) -> None:
    """Each command prints one line, ``Error: invalid program: PATH: MESSAGE``, and exits 1."""
    line = f"Error: invalid program: {path}: {message}\n"
    for command in commands:
        args = [command, str(path)] + (["-o", os.devnull] if command == "view" else [])
        res = CliRunner().invoke(main, args)
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
        assert (res.exit_code, res.stdout, res.stderr) == (1, "", line), command


@pytest.mark.parametrize("name", CASES)
def test_bad_program(name: str) -> None:
    path = CORPUS / f"{name}.json"
    check_cli(path, expected(name))
    lines: list[str] = []
    status = compare_command((str(path),), kernel=lambda program: {}, out=_Collect(lines))
    assert (status, lines) == (2, [f"invalid program: {path}: {expected(name)}"])


class _Collect:
    """A stream that keeps what compare prints, line by line."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def write(self, text: str) -> None:
        self.lines.extend(line for line in text.split("\n") if line)

    def flush(self) -> None:
        pass


# --- too big to commit: written at test time ----------------------------------------------------------


def _forks(depth: int) -> bytes:
    return b'{"ops": ' + b'[{"op": "fork", "child": ' * depth + b"[]" + b"}]" * depth + b"}"


def _sparse(path: Path, size: int) -> None:
    with path.open("wb") as fh:
        fh.truncate(size)


GENERATED: dict[str, tuple[Callable[[Path], None], str]] = {
    "arrays-nested-100000-deep": (lambda p: p.write_bytes(b"[" * 100_000 + b"]" * 100_000),
                                  "program: JSON nested more than 256 deep"),
    "objects-nested-100000-deep": (lambda p: p.write_bytes(b'{"a": ' * 100_000 + b"1" + b"}" * 100_000),
                                   "program: JSON nested more than 256 deep"),
    "forks-nested-100-deep": (lambda p: p.write_bytes(_forks(100)),
                              f"op {'.'.join(['0'] * (MAX_FORK_DEPTH + 1))} (fork), field 'child': forks nested "
                              f"more than {MAX_FORK_DEPTH} deep"),
    "forks-nested-1000-deep": (lambda p: p.write_bytes(_forks(1000)), "program: JSON nested more than 256 deep"),
    "larger-than-64-mib": (lambda p: _sparse(p, (64 << 20) + 1), "program: larger than 64 MiB"),
    "65537-ops": (lambda p: p.write_bytes(b'{"ops": [' + b",".join([b'{"op": "munlockall"}'] * 65537) + b"]}"),
                  "op 65536: more than 65536 ops in one program"),
    "a-10-mb-name": (lambda p: p.write_bytes(b'{"ops": [{"op": "memfd", "size": 1, "name": "' + b"n" * 10_000_000
                                             + b'"}]}'),
                     "op 0 (memfd), field 'name': expected a name (letters, digits and '_', not starting with a "
                     f"digit, at most 64 characters), got '{'n' * 27}...{'n' * 28}'"),
    "a-million-element-list": (lambda p: p.write_bytes(b'{"ops": [{"op": "munlockall", "_x": 0}], "window": ['
                                                       + b"0," * 1_000_000 + b"0]}"),
                               "program, field 'window': expected an object with start and length, got "
                               "[0, 0, 0, 0, 0, 0, ...]"),
}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_bad_program(name: str, tmp_path: Path) -> None:
    write, message = GENERATED[name]
    path = tmp_path / f"{name}.json"
    write(path)
    check_cli(path, message, ("run",))


def test_standard_input_of_any_bytes() -> None:
    """``vmasim run -`` reads bytes: a non-UTF-8 program is one line too, not a UnicodeDecodeError."""
    for name in ("latin1-byte-in-a-string", "elf-header", "utf16-with-bom", "nested-300-deep-in-a-comment"):
        res = CliRunner().invoke(main, ["run", "-"], input=(CORPUS / f"{name}.json").read_bytes())
        assert (res.exit_code, res.stderr) == (1, f"Error: invalid program: -: {expected(name)}\n")


@pytest.mark.parametrize("name", ["random-binary", "integer-with-5000-digits", "fork-child-op-invalid",
                                  "unknown-field-with-a-newline"])
def test_a_real_process(name: str) -> None:
    """Through a real ``vmasim`` process: one line on stderr, exit status 1, nothing on stdout."""
    path = CORPUS / f"{name}.json"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    res = subprocess.run([sys.executable, "-m", "vmasim", "run", str(path)], capture_output=True, env=env,
                         timeout=120, check=False)
    assert (res.returncode, res.stdout) == (1, b"")
    assert res.stderr.decode() == f"Error: invalid program: {path}: {expected(name)}\n"
