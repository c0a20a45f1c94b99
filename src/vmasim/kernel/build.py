"""Build the executor on first use and cache it per user, by content.

The C source ships as package data.  It is compiled with the system C
compiler into ``$XDG_CACHE_HOME/vmasim`` (or ``~/.cache/vmasim``), never into
the source tree or site-packages.  A build is stored under the SHA-256 of the
binary itself (``executor-<digest>``); a small *recipe* file, named by a hash
of the source, the compiler and the flags, records which binary that recipe
produced.  A cached binary is used only if its content still hashes to that
digest and it belongs to us and is writable by nobody else: a name alone is
never trusted, so a truncated, replaced or stale file is rebuilt.  Using a
recipe refreshes its time stamp; recipes unused for :data:`PRUNE_AFTER` and
binaries no recipe names are pruned.  The compiler writes to a private
temporary name that is then renamed into place: concurrent processes may all
compile, and each sees either no binary or a complete one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import time
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


#: Recipes not used for this long are pruned, with the binaries only they named.
PRUNE_AFTER = 14 * 24 * 3600.0

#: Binaries no recipe names, and compiler leftovers, are kept this long (another
#: process may be between writing a binary and its recipe, or still running it).
ORPHAN_GRACE = 24 * 3600.0


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _binary(out_dir: Path, digest: str) -> Path:
    return out_dir / f"executor-{digest[:32]}"


def _trusted(path: Path, digest: str) -> bool:
    """Whether ``path`` is a regular file of ours, writable by nobody else, whose content has ``digest``."""
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return False
        return _digest(path) == digest and os.access(path, os.X_OK)
    except OSError:
        return False


def _cached(out_dir: Path, recipe: Path) -> Path | None:
    """The verified binary a recipe names, refreshing the recipe's time stamp; None if there is none."""
    try:
        digest = recipe.read_text().strip()
    except OSError:
        return None
    target = _binary(out_dir, digest) if len(digest) == 64 else None
    if target is None or not _trusted(target, digest):
        for stale in (recipe, target):
            if stale is not None:
                with contextlib.suppress(OSError):
                    stale.unlink()
        return None
    with contextlib.suppress(OSError):
        os.utime(recipe)
    return target


def _store(out_dir: Path, built: Path, recipe: Path) -> Path:
    """Move a fresh build to its content name and point ``recipe`` at it (both atomically)."""
    digest = _digest(built)
    target = _binary(out_dir, digest)
    os.replace(built, target)
    fd, tmp = tempfile.mkstemp(prefix=f".{recipe.name}.", suffix=".tmp", dir=out_dir)
    with os.fdopen(fd, "w") as fh:
        fh.write(digest + "\n")
    os.replace(tmp, recipe)
    return target


def prune(out_dir: Path, keep: Path, now: float | None = None) -> list[Path]:
    """Remove old builds from ``out_dir``: recipes unused for :data:`PRUNE_AFTER`, binaries no
    recipe names (after :data:`ORPHAN_GRACE`), compiler leftovers; never the recipe ``keep``.
    Returns what was removed."""
    now = time.time() if now is None else now
    removed: list[Path] = []

    def age(p: Path) -> float:
        try:
            return now - p.stat().st_mtime
        except OSError:
            return 0.0

    def drop(p: Path) -> None:
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass

    try:
        entries = list(out_dir.iterdir())
    except OSError:
        return removed
    named: set[str] = set()
    for p in entries:
        if p.name.startswith("recipe-") and p != keep and age(p) > PRUNE_AFTER:
            drop(p)
        elif p.name.startswith("recipe-"):
            with contextlib.suppress(OSError):
                named.add(_binary(out_dir, p.read_text().strip()).name)
    for p in entries:
        orphan = p.name.startswith("executor-") and p.name not in named
        leftover = p.name.startswith(".") and p.name.endswith(".tmp")
        if (orphan or leftover) and age(p) > ORPHAN_GRACE:
            drop(p)
    return removed


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
            candidates.append((cc, flags, out_dir / f"recipe-{key}"))
    # A cached build of any candidate wins, so a host without a static libc
    # does not retry the static build on every start.
    for _, _, recipe in candidates:
        found = _cached(out_dir, recipe)
        if found is not None:
            prune(out_dir, recipe)
            return found
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="vmasim-build-") as tmp:
        # Compile from a real file: the package may live inside a zip.
        source = Path(tmp) / "executor.c"
        source.write_bytes(src)
        for cc, flags, recipe in candidates:
            # built next to its final name: the rename into place must not cross filesystems
            built = out_dir / f".build-{os.getpid()}-{len(errors)}.tmp"
            err = _compile(cc, flags, source, built)
            if err is None:
                try:
                    target = _store(out_dir, built, recipe)
                except OSError as exc:
                    raise BuildError(f"cannot store the executor in {out_dir}: {exc}") from None
                prune(out_dir, recipe)
                return target
            errors.append(f"{cc} {' '.join(flags)}: {err}")
    raise BuildError("could not compile the executor:\n" + "\n".join(errors))
