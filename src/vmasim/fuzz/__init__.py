"""Differential fuzzing of the model against the host kernel.

- :mod:`~vmasim.fuzz.categories`: which ops each ``--category`` exercises (from the op definitions).
- :mod:`~vmasim.fuzz.coverage`: the items of the program format (from the op definitions) and how
  many of them a set of programs uses and the kernel accepted (``vmasim fuzz --coverage``).
- :mod:`~vmasim.fuzz.generate`: a seeded generator of programs that draws from the whole format
  (plain JSON-able dicts, so every reproducer can be rerun with ``vmasim compare``); its parts are
  ``gen_state``, ``gen_base``, ``gen_core``, ``gen_attrs`` and ``gen_lifecycle``.
- :mod:`~vmasim.fuzz.evaluate`: running batches on the model and the kernel and diffing them.
- :mod:`~vmasim.fuzz.shrink`: delta-debugging a divergent program to a small reproducer.
- :mod:`~vmasim.fuzz.campaign`: a whole campaign, and the ``vmasim fuzz`` command.

Everything is deterministic for a given seed: program ``n`` of seed ``s``
depends only on ``(s, n, category)``.
"""

from vmasim.fuzz.campaign import CampaignResult, finish, fuzz_command, run_campaign
from vmasim.fuzz.categories import CATEGORIES, CATEGORY_OPS, plan_category
from vmasim.fuzz.coverage import Coverage, format_items, op_items
from vmasim.fuzz.evaluate import Doc, KernelBatch, Outcome, default_kernel_batch, diff_kind, evaluate, wall_ops
from vmasim.fuzz.generate import generate_program, generate_programs, size_text
from vmasim.fuzz.shrink import ShrinkResult, shrink

__all__ = [
    "CATEGORIES",
    "CATEGORY_OPS",
    "CampaignResult",
    "Coverage",
    "Doc",
    "KernelBatch",
    "Outcome",
    "ShrinkResult",
    "default_kernel_batch",
    "diff_kind",
    "evaluate",
    "finish",
    "format_items",
    "fuzz_command",
    "generate_program",
    "generate_programs",
    "op_items",
    "plan_category",
    "run_campaign",
    "shrink",
    "size_text",
    "wall_ops",
]
