"""vmasim: a model of the Linux kernel's VMA layer, checked against the real kernel.

Layout of the package (inner to outer):

- ``vmasim.core``: the VMA record, the ordered store, the address space
  (mm_struct), and mm/vma.c's merge, split and one modify path
  (``vma_modify`` and its wrappers), plus faults and placement.  It knows
  nothing of JSON, the CLI or the kernel runner; what machine it models is
  a :class:`~vmasim.core.target.Target` passed in.
- ``vmasim.profile`` and ``vmasim.probe``: named machine profiles (built-in,
  from JSON, or probed from the host).
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
from vmasim.core.target import Target
from vmasim.core.vma import VmaView
from vmasim.profile import DEFAULT_PROFILE, Profile, ProfileError, default_profile, resolve_profile

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_PROFILE",
    "AddressSpace",
    "Profile",
    "ProfileError",
    "Target",
    "TouchResult",
    "VmFlag",
    "VmaView",
    "default_profile",
    "resolve_profile",
]
