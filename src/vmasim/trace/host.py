"""The machine traced processes run on: this host's profile, and the files shared by its processes."""

from __future__ import annotations

from vmasim.core.target import Target
from vmasim.procimport import FileTable, process_settings


def host_target() -> Target:
    """This host, as the model should model it: the probed profile, or where the kernel runner cannot
    probe, what /proc and /sys state."""
    from vmasim.probe import host_facts, probe_host
    from vmasim.profile import ProfileError

    try:
        return probe_host().target
    except ProfileError:
        return host_facts()


def host_files() -> FileTable:
    """A fresh table of model files for this host's real ones."""
    return FileTable(process_settings(host_target()))
