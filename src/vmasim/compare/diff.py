"""The differences between two layout reports, in the order a reader should look at them.

:func:`diff_reports` is the single definition of "the model agrees with the
kernel" used by ``vmasim compare`` and by the fuzzer, so both report the same
differences in the same words: the per-op results first (the first call that
went differently usually explains everything after it), then the VMAs in
address order, then the heap, then each fork child.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vmasim.program.ops import OP_DEFS, Result

#: The result fields of the contract; anything else a runner adds (debug data) is not compared.
RESULT_FIELDS = ("op", "ret", "errno", "pages", "fault")
#: The VMA fields of the contract, in the order they are reported.
VMA_FIELDS = ("start", "end", "perms", "offset", "file", "flags", "policy")
#: Ops whose ``ret`` only says success or failure (the contract: 0 on success, the value is not significant).
OBJECT_OPS = frozenset(cls.op_name() for cls in OP_DEFS if cls.result is Result.OBJECT)


def _as_int(value: Any) -> Any:
    """Hex strings and integers compare as numbers, so ``"0x7E00"`` equals ``"0x7e00"``."""
    if isinstance(value, str):
        text = value.strip()
        sign = 1
        if text[:1] in "+-" and text[1:3].lower() == "0x":
            sign = -1 if text[0] == "-" else 1
            text = text[1:]
        if text[:2].lower() == "0x":
            try:
                return sign * int(text, 16)
            except ValueError:
                return value
    return value


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + " ".join(str(v) for v in value) + "]"
    return str(value)


def _same(a: Any, b: Any) -> bool:
    return bool(_as_int(a) == _as_int(b))


def _diff_results(model: Sequence[dict[str, Any]], kernel: Sequence[dict[str, Any]], pre: str) -> list[str]:
    out: list[str] = []
    for i in range(max(len(model), len(kernel))):
        if i >= len(model):
            out.append(f"{pre}results[{i}] ({kernel[i].get('op')}): missing in the model, kernel {_brief(kernel[i])}")
            continue
        if i >= len(kernel):
            out.append(f"{pre}results[{i}] ({model[i].get('op')}): model {_brief(model[i])}, missing in the kernel")
            continue
        m, k = model[i], kernel[i]
        name = m.get("op") or k.get("op")
        if name in OBJECT_OPS and m.get("errno") is None and k.get("errno") is None:
            # Both succeeded; the value (an fd, a pid) is not part of the contract.
            continue
        for key in RESULT_FIELDS:
            if key not in m and key not in k:
                continue
            if not _same(m.get(key), k.get(key)):
                out.append(
                    f"{pre}results[{i}] ({name}): {key}: model {_show(m.get(key))}, kernel {_show(k.get(key))}"
                )
    return out


def _brief(res: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_show(res[k])}" for k in RESULT_FIELDS if k in res and k != "op")


def _vma_text(v: dict[str, Any]) -> str:
    file = v.get("file")
    return f"{v.get('start')}-{v.get('end')} {v.get('perms')} {v.get('offset')}" + (f" {file}" if file else "")


def _diff_flags(m: Any, k: Any) -> str | None:
    if not isinstance(m, list) or not isinstance(k, list):
        return None if m == k else f"model {_show(m)}, kernel {_show(k)}"
    if m == k:
        return None
    only_m = [f for f in m if f not in k]
    only_k = [f for f in k if f not in m]
    if not only_m and not only_k:
        # Same set, other order: the contract promises the kernel's order, so it still counts.
        return f"same flags in another order: model {_show(m)}, kernel {_show(k)}"
    parts = []
    if only_m:
        parts.append("only in the model: " + " ".join(only_m))
    if only_k:
        parts.append("only in the kernel: " + " ".join(only_k))
    return f"{'; '.join(parts)} (model {_show(m)}, kernel {_show(k)})"


def _diff_vmas(model: Sequence[dict[str, Any]], kernel: Sequence[dict[str, Any]], what: str) -> list[str]:
    """Walk both lists in address order, pairing VMAs that start at the same address.

    Pairing by start (not by index) keeps one extra split from making every
    later VMA look different.
    """
    out: list[str] = []
    i = j = 0
    while i < len(model) or j < len(kernel):
        m = model[i] if i < len(model) else None
        k = kernel[j] if j < len(kernel) else None
        ms = _as_int(m["start"]) if m is not None else None
        ks = _as_int(k["start"]) if k is not None else None
        if m is not None and (k is None or (isinstance(ms, int) and isinstance(ks, int) and ms < ks)):
            out.append(f"{what} {m.get('start')}: only in the model: {_vma_text(m)}")
            i += 1
            continue
        if k is not None and (m is None or (isinstance(ms, int) and isinstance(ks, int) and ks < ms)):
            out.append(f"{what} {k.get('start')}: only in the kernel: {_vma_text(k)}")
            j += 1
            continue
        assert m is not None and k is not None
        keys = [f for f in VMA_FIELDS if f in m or f in k]
        for key in keys:
            if key == "flags":
                why = _diff_flags(m.get(key), k.get(key))
                if why is not None:
                    out.append(f"{what} {m.get('start')}: flags: {why}")
            elif not _same(m.get(key), k.get(key)):
                out.append(f"{what} {m.get('start')}: {key}: model {_show(m.get(key))}, kernel {_show(k.get(key))}")
        i += 1
        j += 1
    return out


def diff_reports(model: Mapping[str, Any], kernel: Mapping[str, Any], *, prefix: str = "") -> list[str]:
    """The human-readable differences between two layout reports, first difference first.

    Compared: each op's result (ret, errno, pages, fault; for ops that create
    objects only success or failure), then the VMAs in the window in address
    order with every contract field, then the heap VMAs, then each fork child
    recursively (lines prefixed with ``child <op index>:``).  An empty list
    means the reports agree.
    """
    out = _diff_results(model.get("results", []), kernel.get("results", []), prefix)
    out += _diff_vmas(model.get("vmas", []), kernel.get("vmas", []), f"{prefix}vma")
    out += _diff_vmas(model.get("heap", []), kernel.get("heap", []), f"{prefix}heap")
    mc: dict[str, Any] = model.get("children", {}) or {}
    kc: dict[str, Any] = kernel.get("children", {}) or {}
    for key in sorted(set(mc) | set(kc), key=lambda s: [int(p) if p.isdigit() else p for p in s.split(".")]):
        where = f"{prefix}child {key}: "
        if key not in mc:
            out.append(f"{where}the kernel reports a child, the model does not")
        elif key not in kc:
            out.append(f"{where}the model reports a child, the kernel does not")
        else:
            out += diff_reports(mc[key], kc[key], prefix=where)
    return out


def format_diff(diffs: Iterable[str]) -> str:
    """The differences as text, one per line (what the fuzzer saves next to a reproducer)."""
    return "".join(f"{line}\n" for line in diffs)
