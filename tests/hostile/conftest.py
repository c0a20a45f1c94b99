"""Hostile-corpus test setup: the kernel tests' helpers on the path."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "kernel"))
