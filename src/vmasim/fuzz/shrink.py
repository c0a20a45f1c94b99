"""Delta-debugging a divergent program down to a small reproducer, re-running candidates in batches."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from vmasim import constants as C
from vmasim.fuzz.evaluate import Doc, KernelBatch, Outcome, evaluate
from vmasim.fuzz.generate import size_text
from vmasim.profile import Profile
from vmasim.program import ProgramError, parse_program
from vmasim.program.ops import Mmap, definition_of
from vmasim.program.values import Address, Flags, ObjectRef, Prot, Size, parse_int

PAGE = C.PAGE_SIZE


def _positions(ops: Sequence[Doc], prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Every op's path in preorder: ``(3,)`` for op 3, ``(3, 1)`` for op 1 of op 3's fork child."""
    out: list[tuple[int, ...]] = []
    for i, op in enumerate(ops):
        out.append((*prefix, i))
        if isinstance(op.get("child"), list):
            out += _positions(op["child"], (*prefix, i))
    return out


def _without(ops: Sequence[Doc], drop: set[tuple[int, ...]], prefix: tuple[int, ...] = ()) -> list[Doc]:
    out: list[Doc] = []
    for i, op in enumerate(ops):
        path = (*prefix, i)
        if path in drop:
            continue
        if isinstance(op.get("child"), list):
            op = {**op, "child": _without(op["child"], drop, path)}
        out.append(op)
    return out


def _uses(op: Doc) -> tuple[set[str], set[str]]:
    """The address names and object names ``op``'s fields use, by its definition."""
    addrs: set[str] = set()
    objs: set[str] = set()
    cls = definition_of(op)
    if cls is None:
        return addrs, objs
    for key, kind in cls.kinds().items():
        if key not in op:
            continue
        if isinstance(kind, Address):
            try:
                ref = kind.parse(op[key])
            except ValueError:
                continue
            if ref is not None and ref.name is not None:
                addrs.add(ref.name)
        elif isinstance(kind, ObjectRef) and isinstance(op[key], str):
            objs.add(op[key])
    return addrs, objs


def _drop_dangling(ops: Sequence[Doc], addrs: set[str], objs: set[str]) -> list[Doc]:
    """Drop ops that use a name no remaining op binds (their binder was removed), transitively."""
    out: list[Doc] = []
    for op in ops:
        used_addrs, used_objs = _uses(op)
        if not used_addrs <= addrs or not used_objs <= objs:
            continue
        if isinstance(op.get("child"), list):
            op = {**op, "child": _drop_dangling(op["child"], set(addrs), set(objs))}
        if isinstance(op.get("as"), str):
            addrs.add(op["as"])
        cls = definition_of(op)
        if cls is not None and cls.creates is not None and isinstance(op.get("name"), str):
            objs.add(op["name"])
        out.append(op)
    return out


def _with_ops(doc: Doc, ops: list[Doc]) -> Doc:
    return {**doc, "ops": _drop_dangling(ops, {"W"}, set())}


def _get(ops: list[Doc], path: tuple[int, ...]) -> Doc:
    op = ops[path[0]]
    for i in path[1:]:
        op = op["child"][i]
    return op


def _replace(doc: Doc, path: tuple[int, ...], new_op: Doc) -> Doc:
    def go(ops: list[Doc], rest: tuple[int, ...]) -> list[Doc]:
        out = list(ops)
        if len(rest) == 1:
            out[rest[0]] = new_op
        else:
            out[rest[0]] = {**out[rest[0]], "child": go(out[rest[0]]["child"], rest[1:])}
        return out

    return {**doc, "ops": go(doc["ops"], path)}


def _simplifications(op: Doc) -> list[Doc]:
    """Simpler variants of one op, by its definition: optional fields left out, shorter lengths, one flag fewer,
    protection rw, fixed mmaps that replace nothing."""
    cls = definition_of(op)
    if cls is None:
        return []
    out: list[Doc] = []
    required = set(cls.required())
    for key, kind in cls.kinds().items():
        if key not in op:
            continue
        value = op[key]
        if key not in required:
            out.append({k: v for k, v in op.items() if k != key})
        if isinstance(kind, Size) and kind.maximum is None:
            try:
                n = parse_int(value)
            except ValueError:
                continue
            if 0 < n < 1 << 40 and n % PAGE == 0 and n > PAGE:
                out.append({**op, key: "4K"})
                half = (n // 2) // PAGE * PAGE
                if half > PAGE:
                    out.append({**op, key: size_text(half)})
        elif isinstance(kind, Flags) and isinstance(value, list):
            out += [{**op, key: [g for g in value if g != f]} for f in value]
            if "fixed" in value and cls is Mmap:
                # MAP_FIXED_NOREPLACE maps the same but never unmaps what was there.
                out.append({**op, key: ["fixed_noreplace" if g == "fixed" else g for g in value]})
        elif isinstance(kind, Prot) and isinstance(value, str) and value != "rw":
            out.append({**op, key: "rw"})
    return out


@dataclass
class ShrinkResult:
    """The smallest program found and its outcome."""

    doc: Doc
    outcome: Outcome
    evaluations: int
    seconds: float
    complete: bool  # False when the time or evaluation budget ran out first


def shrink(
    doc: Doc,
    kernel_batch: KernelBatch,
    *,
    first: Outcome | None = None,
    budget_s: float = 20.0,
    max_evals: int = 3000,
    profile: Profile | None = None,
) -> ShrinkResult:
    """Delta-debug a divergent program to a small one that still shows the same kind of divergence.

    First whole ops are removed (ddmin over all ops, fork children included;
    removing an op that binds a name also removes the ops that use it), then
    single ops are simplified (shorter lengths, fewer flags).  Candidates of a
    round are run as one batch.  Stops after ``budget_s`` seconds or
    ``max_evals`` candidate runs with the best program so far.
    """
    t0 = time.monotonic()
    best = first if first is not None else evaluate([doc], kernel_batch, profile)[0]
    sig = best.signature()
    if sig is None:
        raise ValueError("shrink() needs a program that diverges")
    evals = 0

    def over() -> bool:
        return time.monotonic() - t0 > budget_s or evals >= max_evals

    def try_batch(cands: list[Doc]) -> Outcome | None:
        """Run the valid, not yet seen candidates; return the first one still showing the divergence."""
        nonlocal evals
        fresh: list[Doc] = []
        for c in cands:
            key = json.dumps(c, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            try:
                parse_program(c)
            except ProgramError:
                continue
            fresh.append(c)
        if not fresh:
            return None
        evals += len(fresh)
        for out in evaluate(fresh, kernel_batch, profile):
            if out.signature() == sig:
                return out
        return None

    seen: set[str] = {json.dumps(best.doc, sort_keys=True)}
    # 1. remove ops (ddmin)
    n = 2
    while not over():
        pos = _positions(best.doc["ops"])
        if not pos:
            break
        n = min(n, len(pos))
        size = -(-len(pos) // n)
        chunks = [pos[i : i + size] for i in range(0, len(pos), size)]
        cands = [_with_ops(best.doc, _without(best.doc["ops"], set(c))) for c in chunks]
        found = None
        # Batches bounded so that an early success is not paid for with a huge round.
        for i in range(0, len(cands), 64):
            found = try_batch(cands[i : i + 64])
            if found is not None or over():
                break
        if found is not None:
            best = found
            n = max(n - 1, 2)
            continue
        if n >= len(pos):
            break
        n = min(len(pos), n * 2)
    # 2. simplify single ops
    progress = True
    while progress and not over():
        progress = False
        cands = []
        for path in _positions(best.doc["ops"]):
            for variant in _simplifications(_get(best.doc["ops"], path)):
                cands.append(_replace(best.doc, path, variant))
        for i in range(0, len(cands), 64):
            found = try_batch(cands[i : i + 64])
            if found is not None:
                best = found
                progress = True
                break
            if over():
                break
    return ShrinkResult(best.doc, best, evals, time.monotonic() - t0, not over())
