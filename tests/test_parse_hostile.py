"""Whatever a program file holds, parsing ends in a Program or one short ProgramError line (never a traceback),
and a program that parses runs on the model without anything but its documented WouldBlock."""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmasim.core.errors import WouldBlock
from vmasim.program import ProgramError, parse_program
from vmasim.program.model import run_model

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [json.loads(p.read_text()) for p in sorted((ROOT / "examples").glob("*.json"))]
SEED_TEXTS = [p.read_bytes() for p in sorted((ROOT / "examples").glob("*.json"))]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.sampled_from([0, -1, 4096, 2**31, 2**32 + 4, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 2**80 + 4,
                     "W", "W+0x1000", "W-4K", "a", "a+0x10000000000000000", "x-1", "buf.a", "16K", "1T", "0x",
                     "rw", "none", "private", "fixed", "dontneed", "bind", "0-3", "0-4000000000", "", "\u0000",
                     "\ud800", "\n"]),
)
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                         max_size=4), max_leaves=8)


def check_parse(doc: Any) -> None:
    """Parse ``doc``; a ProgramError must be one short line; a program must run on the model."""
    try:
        program = parse_program(doc)
    except ProgramError as exc:
        text = str(exc)
        assert "\n" not in text and len(text) < 1000, text
        return
    with contextlib.suppress(WouldBlock):
        run_model(program)


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside ``value`` (dict keys and list indexes)."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*prefix, i))
    return out


@st.composite
def mutated_programs(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(doc)))
        action = draw(st.sampled_from(["replace", "replace", "delete", "insert"]))
        if not where:
            doc = draw(json_values) if action == "replace" else doc
            continue
        parent = doc
        for key in where[:-1]:
            parent = parent[key]
        last = where[-1]
        if action == "replace":
            parent[last] = draw(json_values)
        elif action == "delete":
            del parent[last]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(json_values)
        else:
            parent.insert(last, draw(json_values))
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_programs())
def test_mutated_programs(doc: Any) -> None:
    check_parse(doc)
    try:
        text = json.dumps(doc)
    except ValueError:  # NaN and the like: the JSON text itself is the test then
        return
    check_parse(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SEED_TEXTS), st.lists(st.tuples(st.integers(0, 10**6), st.binary(max_size=3)), min_size=1,
                                            max_size=4))
def test_edited_bytes(text: bytes, edits: list[tuple[int, bytes]]) -> None:
    data = bytearray(text)
    for pos, new in edits:
        pos %= len(data) + 1
        data[pos:pos + max(len(new), 1)] = new
    check_parse(bytes(data))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes(data: bytes) -> None:
    check_parse(data)


@pytest.mark.parametrize("value", [set(), frozenset({1}), b"ops", bytearray(b"x"), 1.5, object(), (1, 2), None])
def test_python_values_that_json_cannot_hold(value: Any) -> None:
    """parse_program() also takes Python objects: what JSON could not give is rejected the same way."""
    for doc in (value, {"ops": value}, {"ops": [value]}, {"ops": [{"op": "mmap", "addr": value, "length": 1,
                                                                  "prot": "rw", "flags": "private"}]},
                {"window": value}, {"ops": [{"op": "fork", "child": value}]}, {value: 1} if _hashable(value) else {}):
        check_parse(doc)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
