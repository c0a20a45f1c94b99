"""The op definitions are complete, and everything derived from them is current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from vmasim.cli import main
from vmasim.program import parse_program
from vmasim.program.model import HANDLERS
from vmasim.program.ops import OP_DEFS, OP_NAMES, Fork, Result
from vmasim.program.reference import json_schema, reference_markdown
from vmasim.program.values import CType

ROOT = Path(__file__).resolve().parent.parent
CORPORA = [*sorted((ROOT / "examples").glob("*.json")), *sorted((ROOT / "tests" / "regressions").glob("*.json")),
           *sorted((ROOT / "tests" / "probes").glob("*.json")), *sorted((ROOT / "tests" / "scenarios").glob("*.json"))]


@pytest.mark.parametrize("cls", OP_DEFS, ids=[c.__name__ for c in OP_DEFS])
def test_every_op_is_defined_completely(cls: type) -> None:
    """A docstring, a result, a model handler, and an executor encoding (fork has its own protocol rule)."""
    assert cls.__doc__ and cls.__doc__.strip()
    assert isinstance(cls.result, Result)
    assert cls in HANDLERS
    assert cls.wire is not None or cls is Fork
    if cls.wire is not None:
        # Every argument it sends is a field, a property, or a constant.
        for arg in cls.wire.args:
            assert isinstance(arg, int) or arg in cls.kinds() or isinstance(getattr(cls, arg, None), property), arg
    for field, info in cls.model_fields.items():
        assert field == "op" or info.description, f"{cls.__name__}.{field} has no description"


def test_the_format_reference_is_current() -> None:
    """docs/ is generated: `python -m vmasim.program.reference docs/` rewrites it."""
    assert (ROOT / "docs" / "program-format.md").read_text() == reference_markdown()
    assert json.loads((ROOT / "docs" / "program.schema.json").read_text()) == json_schema()
    for name in OP_NAMES:
        assert f"### `{name}" in reference_markdown()


def test_every_stored_program_follows_the_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    for path in CORPORA:
        doc = json.loads(path.read_text())
        errors = sorted(validator.iter_errors(doc), key=str)
        assert not errors, f"{path.name}: {errors[0].message}"
        parse_program(doc)


def test_the_schema_rejects_what_the_parser_rejects() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    for doc in ({"ops": [{"op": "mmap", "addr": None, "length": "4K", "prot": "rw", "flags": ["private"],
                          "bogus": 1}]},
                {"ops": [{"op": "munmap", "addr": "W"}]},
                {"window": {"start": 4096, "lenght": 4096}},
                {"ops": [{"op": "madvise", "addr": "W", "length": "4K", "advice": "sometimes"}]}):
        assert not validator.is_valid(doc), doc


def test_c_types_narrow_like_the_kernel() -> None:
    assert CType.INT.cast((1 << 32) + 4) == 4
    assert CType.INT.cast(1 << 63) == 0
    assert CType.INT.cast(0xFFFFFFFF) == -1
    assert CType.U32.cast(-1 & ((1 << 64) - 1)) == 0xFFFFFFFF
    assert CType.I64.cast((1 << 64) - 1) == -1
    assert CType.U64.cast(5) == 5


def test_vmasim_ops_lists_every_op() -> None:
    res = CliRunner().invoke(main, ["ops"])
    assert res.exit_code == 0, res.output
    for name in OP_NAMES:
        assert f"\n{name} " in "\n" + res.output
    assert "mmap             addr, length, prot, flags, fd=null, offset=0, as=null" in res.output
