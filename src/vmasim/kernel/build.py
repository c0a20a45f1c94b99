"""Build the executor on first use and cache it per user.

The C source ships as package data.  It is compiled with the system C
compiler into ``$XDG_CACHE_HOME/vmasim`` (or ``~/.cache/vmasim``), never into
the source tree or site-packages, under a name that hashes the source, the
compiler and the flags, so an upgrade or a different compiler never reuses a
stale binary.  The compiler writes to a private temporary name that is then
renamed into place: concurrent test processes may all compile, and each sees
either no binary or a complete one.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from vmasim.kernel.errors import BuildError

#: Flag sets tried in order.  Static first: a dynamic executor maps its shared
#: libraries and the loader's data, which is harmless for the window (they land
#: near mmap_base) but costs exec time and makes the process layout less plain.
FLAG_SETS: tuple[tuple[str, ...], ...] = (
    ("-O2", "-static", "-Wall"),
    ("-O2", "-Wall"),
)


def executor_source() -> bytes:
    """The executor's C source as shipped in the package."""
    return resources.files("vmasim.kernel").joinpath("executor.c").read_bytes()


def cache_dir() -> Path:
    """The per-user directory that holds compiled executors."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vmasim"


def _compilers() -> list[str]:
    names = [os.environ["CC"]] if os.environ.get("CC") else []
    names += ["cc", "gcc", "clang"]
    found: list[str] = []
    for name in names:
        path = shutil.which(name)
        if path and path not in found:
            found.append(path)
    return found


def _compiler_id(cc: str) -> bytes:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = b""
    return cc.encode() + b"\0" + out


def _compile(cc: str, flags: tuple[str, ...], source: Path, target: Path) -> str | None:
    """Compile atomically into ``target``; return None on success, else the compiler's complaint."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run(
            [cc, *flags, "-o", tmp, str(source)], capture_output=True, text=True, timeout=120, check=False
        )
        if proc.returncode != 0:
            return (proc.stderr or proc.stdout).strip()[-2000:] or f"{cc} exited with {proc.returncode}"
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
        return None
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{cc}: {exc}"
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.lru_cache(maxsize=1)
def executor_path() -> Path:
    """The compiled executor, building it if needed.  Raises :class:`BuildError` on failure."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise BuildError(f"the kernel runner needs Linux on x86_64, not {platform.system()} {platform.machine()}")
    src = executor_source()
    compilers = _compilers()
    if not compilers:
        raise BuildError("no C compiler found (tried $CC, cc, gcc, clang)")
    out_dir = cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    candidates: list[tuple[str, tuple[str, ...], Path]] = []
    for cc in compilers:
        cid = _compiler_id(cc)
        for flags in FLAG_SETS:
            key = hashlib.sha256(src + b"\0" + cid + b"\0" + " ".join(flags).encode()).hexdigest()[:16]
            candidates.append((cc, flags, out_dir / f"executor-{key}"))
    # A cached build of any candidate wins, so a host without a static libc
    # does not retry the static build on every start.
    for _, _, target in candidates:
        if target.is_file() and os.access(target, os.X_OK):
            return target
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="vmasim-build-") as tmp:
        # Compile from a real file: the package may live inside a zip.
        source = Path(tmp) / "executor.c"
        source.write_bytes(src)
        for cc, flags, target in candidates:
            err = _compile(cc, flags, source, target)
            if err is None:
                return target
            errors.append(f"{cc} {' '.join(flags)}: {err}")
    raise BuildError("could not compile the executor:\n" + "\n".join(errors))
