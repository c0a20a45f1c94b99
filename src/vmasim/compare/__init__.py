"""Comparing the model's layout report with the host kernel's.

- :mod:`~vmasim.compare.diff`: the one definition of "the model agrees with the kernel", field by field.
- :mod:`~vmasim.compare.view`: both reports side by side, as maps-like lines.
- :mod:`~vmasim.compare.command`: the ``vmasim compare`` command.
"""

from vmasim.compare.command import compare_command
from vmasim.compare.diff import diff_reports, format_diff
from vmasim.compare.view import maps_lines, print_side_by_side, side_by_side_rows

__all__ = ["compare_command", "diff_reports", "format_diff", "maps_lines", "print_side_by_side", "side_by_side_rows"]
