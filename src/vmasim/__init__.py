"""vmasim: a model of the Linux kernel's VMA layer, checked against the real kernel.

Layout of the package (inner to outer):

- ``vmasim.core``: the VMA record, the ordered store, the address space
  (mm_struct), and mm/vma.c's merge, split and one modify path
  (``vma_modify`` and its wrappers), plus faults and placement.  It knows
  nothing of JSON, the CLI or the kernel runner.
- ``vmasim.syscalls``: one module per system-call family; each validates its
  arguments like the kernel and calls the modify path.
- ``vmasim.api``: :class:`AddressSpace`, the Python API named after the calls.
- ``vmasim.render`` and ``vmasim.report``: /proc formats and the layout report.
- ``vmasim.program``: the JSON program language shared with the kernel runner.
- ``vmasim.kernel``: runs programs on the host kernel.
- ``vmasim.cli``: the ``vmasim`` command.
"""

from vmasim.api import AddressSpace
from vmasim.constants import *  # noqa: F403
from vmasim.core.fault import TouchResult
from vmasim.core.flags import VmFlag
from vmasim.core.vma import VmaView
from vmasim.target import MODELLED_KERNEL, MODELLED_KERNEL_DESCRIPTION

__version__ = "0.1.0"

__all__ = ["MODELLED_KERNEL", "MODELLED_KERNEL_DESCRIPTION", "AddressSpace", "TouchResult", "VmFlag", "VmaView"]
