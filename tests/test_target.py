"""Target profiles: the model follows the machine it is given, and never reads the host itself."""

from __future__ import annotations

import dataclasses
import errno
import json
import re
import tokenize
from pathlib import Path

import pytest

import vmasim as v
from vmasim.core.errors import WouldBlock
from vmasim.core.target import Cpu, Files, KernelBehaviour, Limits, Memory, Target
from vmasim.profile import (
    DEFAULT_PROFILE,
    Profile,
    ProfileError,
    builtin_profiles,
    profile_from_dict,
    resolve_profile,
)
from vmasim.program import parse_program
from vmasim.program.model import run_model, run_model_space

SRC = Path(__file__).resolve().parent.parent / "src" / "vmasim"
W = 0x7E0000000000
P = 4096
RW = v.PROT_READ | v.PROT_WRITE
ANON = v.MAP_PRIVATE | v.MAP_ANONYMOUS
FIXED = ANON | v.MAP_FIXED_NOREPLACE


def space(**sections: object) -> v.AddressSpace:
    """An address space of the default target with some sections replaced."""
    return v.AddressSpace(target=dataclasses.replace(Target(), **sections))  # type: ignore[arg-type]


# --- profiles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(builtin_profiles()))
def test_builtin_profiles_round_trip_through_json(name: str) -> None:
    prof = builtin_profiles()[name]
    assert profile_from_dict(json.loads(prof.to_json())) == prof
    assert prof.name == name and prof.description


def test_default_profile_is_the_documented_one() -> None:
    assert resolve_profile(None) is resolve_profile("default") is builtin_profiles()[DEFAULT_PROFILE]
    assert v.AddressSpace().profile.name == DEFAULT_PROFILE


def test_profile_files_and_errors(tmp_path: Path) -> None:
    prof = builtin_profiles()["linux-6.18.44-nopku"].with_name("mine")
    path = tmp_path / "mine.json"
    path.write_text(prof.to_json())
    assert resolve_profile(str(path)) == prof
    with pytest.raises(ProfileError, match="unknown profile 'nope'"):
        resolve_profile("nope")
    bad = prof.to_dict()
    bad["target"]["cpu"]["pkru"] = True
    with pytest.raises(ProfileError, match=r"target\.cpu: unknown field\(s\) pkru"):
        profile_from_dict(bad)
    bad = prof.to_dict()
    bad["target"]["memory"]["thp_anon"] = "sometimes"
    with pytest.raises(ProfileError, match=r"target\.memory\.thp_anon: expected one of always, madvise, never"):
        profile_from_dict(bad)
    bad = prof.to_dict()
    bad["target"]["limits"]["max_map_count"] = "lots"
    with pytest.raises(ProfileError, match=r"target\.limits\.max_map_count: expected an integer"):
        profile_from_dict(bad)
    # Every field but the name may be left out.
    assert profile_from_dict({"name": "bare"}).target == Target()


def test_the_model_reads_nothing_from_the_host() -> None:
    """The core and the system calls get every machine fact from the target, never from the host."""
    host_reads = re.compile(r"\bos\.(?!strerror\b)\w+|\b(platform|resource|subprocess|socket|shutil)\b"
                            r"|sysconf|getrlimit|/proc/|/sys/|\bopen\(|environ|cpu_count|getuid|geteuid")
    offenders = []
    for folder in ("core", "syscalls"):
        for path in sorted((SRC / folder).glob("*.py")):
            with path.open("rb") as fh:
                # Code only: docstrings and comments may name what they like.
                code = [t for t in tokenize.tokenize(fh.readline)
                        if t.type not in (tokenize.STRING, tokenize.COMMENT, tokenize.ENCODING)]
            lines: dict[int, list[str]] = {}
            for tok in code:
                lines.setdefault(tok.start[0], []).append(tok.string)
            for n, toks in lines.items():
                text = "".join(toks)
                if host_reads.search(text) or host_reads.search(" ".join(toks)):
                    offenders.append(f"{path.relative_to(SRC)}:{n}: {text}")
    assert offenders == []


def test_no_process_global_numbering() -> None:
    """The same program run twice in one process gives the same explanation (anon_vma and uffd numbers)."""
    doc = json.loads((SRC.parent.parent / "examples" / "02-anon-vma-decides.json").read_text())
    program = parse_program(doc)
    explained = []
    for _ in range(2):
        _report, sp = run_model_space(program)
        explained.append([(a.start, b.start, why) for a, b, why in sp.explain()])
    assert explained[0] == explained[1]
    assert any("AnonVma#1" in " ".join(why) for _, _, why in explained[0])


# --- CPU ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("pku", [True, False])
def test_protection_keys_decide_exec_only_memory(pku: bool) -> None:
    s = space(cpu=Cpu(pku=pku))
    s.mmap(W, 4 * P, RW, FIXED)
    s.mprotect(W + 2 * P, 2 * P, v.PROT_EXEC)
    vmas = s.vmas()
    # Never written to, so the commit charge goes with the write permission.
    assert [vma.flags for vma in vmas] == [["rd", "wr", "mr", "mw", "me", "ac"], ["ex", "mr", "mw", "me"]]
    assert vmas[1].vm_flags >> 32 == (1 if pku else 0)
    assert s.touch(W + 2 * P, P, write=False).fault == ("SIGSEGV" if pku else None)
    assert ("ProtectionKey:" in s.smaps()) is pku


def test_five_level_paging_opens_the_high_address_space() -> None:
    high = 1 << 52
    assert space(cpu=Cpu(la57=True)).mmap(high, P, RW, ANON) == high
    assert space(cpu=Cpu(la57=False)).mmap(high, P, RW, ANON) < 1 << 47
    with pytest.raises(OSError) as exc:
        space(cpu=Cpu(la57=False)).munmap(high, P)
    assert exc.value.errno == errno.EINVAL


# --- kernel behaviour switches ---------------------------------------------------------------------


@pytest.mark.parametrize("flag", [True, False])
def test_maybe_guard_flag(flag: bool) -> None:
    s = space(kernel=KernelBehaviour(maybe_guard_flag=flag))
    s.mmap(W, 2 * P, RW, FIXED)
    s.madvise(W, P, v.MADV_GUARD_INSTALL)
    assert ("gu" in s.vmas()[0].flags) is flag
    assert s.touch(W, P).fault == "SIGSEGV"


@pytest.mark.parametrize(("relaxed", "vmas"), [(True, 1), (False, 2)])
def test_anon_vma_relaxation(relaxed: bool, vmas: int) -> None:
    """The selftest mprotect_unfaulted_left: merges since 6.16, stays two VMAs before."""
    s = space(kernel=KernelBehaviour(anon_vma_relaxed=relaxed))
    s.mmap(W, 10 * P, RW, FIXED | v.MAP_NORESERVE)
    s.mprotect(W, 5 * P, v.PROT_READ)
    s.touch(W + 5 * P, P)
    s.mprotect(W + 5 * P, 5 * P, v.PROT_READ)
    assert len(s) == vmas


@pytest.mark.parametrize("multi", [True, False])
def test_multi_vma_mremap(multi: bool) -> None:
    s = space(kernel=KernelBehaviour(multi_vma_mremap=multi))
    s.mmap(W, 2 * P, RW, FIXED)
    s.mprotect(W + P, P, v.PROT_READ)
    if multi:
        assert s.mremap(W, 2 * P, 2 * P, v.MREMAP_MAYMOVE | v.MREMAP_FIXED, W + 0x100000) == W + 0x100000
        assert [vma.start for vma in s] == [W + 0x100000, W + 0x101000]
    else:
        with pytest.raises(OSError) as exc:
            s.mremap(W, 2 * P, 2 * P, v.MREMAP_MAYMOVE | v.MREMAP_FIXED, W + 0x100000)
        assert exc.value.errno == errno.EFAULT


def test_anonymous_vma_names() -> None:
    off = v.AddressSpace()
    off.mmap(W, 4 * P, RW, FIXED)
    with pytest.raises(OSError) as exc:
        off.prctl_set_vma_anon_name(W, P, "x")
    assert exc.value.errno == errno.EINVAL
    s = space(kernel=KernelBehaviour(anon_vma_name=True))
    s.mmap(W, 4 * P, RW, FIXED)
    s.prctl_set_vma_anon_name(W + P, P, "buf")
    assert [vma.anon_name for vma in s] == [None, "buf", None]
    assert "[anon:buf]" in s.maps()
    assert any("different anonymous names" in why for _, _, reasons in s.explain() for why in reasons)
    s.prctl_set_vma_anon_name(W + P, P, None)
    s.mprotect(W, 4 * P, RW)  # touches both boundaries: the unnamed pieces merge back
    assert len(s) == 1
    for bad in ("a" * 80, "x[1]", "tab\there"):
        with pytest.raises(OSError) as exc:
            s.prctl_set_vma_anon_name(W, P, bad)
        assert exc.value.errno == errno.EINVAL
    fd = s.memfd_create("m", 4 * P)
    s.mmap(W + 0x10000, P, RW, v.MAP_SHARED | v.MAP_FIXED_NOREPLACE, fd)
    with pytest.raises(OSError) as exc:
        s.prctl_set_vma_anon_name(W + 0x10000, P, "file")
    assert exc.value.errno == errno.EBADF
    s.mmap(W + 0x20000, P, RW, v.MAP_SHARED | v.MAP_ANONYMOUS | v.MAP_FIXED_NOREPLACE)
    s.prctl_set_vma_anon_name(W + 0x20000, P, "shm")
    assert "[anon_shmem:shm]" in s.maps()


def test_soft_dirty() -> None:
    s = space(kernel=KernelBehaviour(soft_dirty=True))
    s.mmap(W, 2 * P, RW, FIXED)
    s.mmap(W + 2 * P, 2 * P, RW, FIXED)
    assert [vma.flags for vma in s] == [["rd", "wr", "mr", "mw", "me", "ac", "sd"]]
    assert "sd" not in v.AddressSpace().vmas() and all("sd" not in vma.flags for vma in v.AddressSpace())


# --- limits -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lsm", "placed"), [(0x10000, 0x10000), (0, 0x1000)])
def test_hints_are_raised_to_the_effective_mmap_min_addr(lsm: int, placed: int) -> None:
    assert space(limits=Limits(lsm_mmap_min_addr=lsm)).mmap(0x1000, P, RW, ANON) == placed


def test_unprivileged_limits() -> None:
    s = space(limits=Limits(privileged=False, rlimit_memlock=2 * P))
    s.mmap(W, 4 * P, RW, FIXED)
    s.mlock(W, 2 * P)
    with pytest.raises(OSError) as exc:
        s.mlock(W + 2 * P, P)
    assert exc.value.errno == errno.ENOMEM
    s.mlock(W, 2 * P)  # already locked pages do not count twice
    with pytest.raises(OSError) as exc:
        s.mmap(W + 0x10000, P, RW, FIXED | v.MAP_LOCKED)
    assert exc.value.errno == errno.EAGAIN
    zero = space(limits=Limits(privileged=False, rlimit_memlock=0))
    zero.mmap(W, P, RW, FIXED)
    for call in (lambda: zero.mlock(W, P), lambda: zero.mmap(W + P, P, RW, FIXED | v.MAP_LOCKED),
                 lambda: zero.mlockall(v.MCL_CURRENT)):
        with pytest.raises(OSError) as exc:
            call()
        assert exc.value.errno == errno.EPERM
    root = space(limits=Limits(privileged=True, rlimit_memlock=0))
    root.mmap(W, 4 * P, RW, FIXED | v.MAP_LOCKED)
    assert root.counters["locked_vm"] == 4


def test_rlimit_as_and_data() -> None:
    s = space(limits=Limits(rlimit_as=8 * P))
    s.mmap(W, 8 * P, v.PROT_READ, FIXED)
    with pytest.raises(OSError) as exc:
        s.mmap(W + 0x10000, P, v.PROT_READ, FIXED)
    assert exc.value.errno == errno.ENOMEM
    s.mmap(W, 8 * P, RW, ANON | v.MAP_FIXED)  # replacing what is there adds nothing
    d = space(limits=Limits(rlimit_data=4 * P))
    d.mmap(W, 8 * P, v.PROT_READ, FIXED)  # not data
    with pytest.raises(OSError) as exc:
        d.mmap(W + 0x10000, 8 * P, RW, FIXED)
    assert exc.value.errno == errno.ENOMEM
    with pytest.raises(OSError) as exc:
        d.mprotect(W, 8 * P, RW)  # becoming data
    assert exc.value.errno == errno.ENOMEM
    assert d.brk(d.mm.start_brk + 8 * P) == d.mm.start_brk


def test_overcommit_modes() -> None:
    ram = Memory(ram_pages=1000)
    guess = space(memory=ram)
    guess.mmap(W, 1000 * P, RW, FIXED)
    guess.mmap(W + 0x1000000, 1000 * P, RW, FIXED)  # heuristic: each request alone is judged
    with pytest.raises(OSError):
        guess.mmap(W + 0x2000000, 1001 * P, RW, FIXED)
    never = space(memory=ram, limits=Limits(overcommit_memory=2, overcommit_ratio=50))
    never.mmap(W, 400 * P, RW, FIXED)
    with pytest.raises(OSError) as exc:
        never.mmap(W + 0x1000000, 101 * P, RW, FIXED)
    assert exc.value.errno == errno.ENOMEM
    never.mmap(W + 0x1000000, 101 * P, RW, FIXED | v.MAP_NORESERVE)  # not charged
    always = space(memory=ram, limits=Limits(overcommit_memory=1))
    always.mmap(W, 10**6 * P, RW, FIXED)


# --- memory ---------------------------------------------------------------------------------------


def test_numa_nodes() -> None:
    one = v.AddressSpace()
    one.mmap(W, P, RW, FIXED)
    with pytest.raises(OSError) as exc:
        one.mbind(W, P, v.MPOL_BIND, 0b10)
    assert exc.value.errno == errno.EINVAL
    two = space(memory=Memory(numa_nodes=(0, 1)))
    two.mmap(W, P, RW, FIXED)
    two.mbind(W, P, v.MPOL_BIND, 0b10)
    assert "bind:1" in two.numa_maps()


def test_userfaultfd_features_and_privilege() -> None:
    s = space(memory=Memory(uffd_features=0x7F))
    with pytest.raises(OSError) as exc:
        s.userfaultfd(v.UFFD_FEATURE_SIGBUS)
    assert exc.value.errno == errno.EINVAL
    for limits, blocks in ((Limits(privileged=True), True), (Limits(privileged=False), False)):
        u = space(limits=limits)
        u.mmap(W, 2 * P, RW, FIXED)
        fd = u.userfaultfd()
        u.uffd_register(fd, W, 2 * P, v.UFFDIO_REGISTER_MODE_MISSING)
        assert u.touch(W, P).fault == "UFFD"  # a user fault always waits
        if blocks:
            with pytest.raises(WouldBlock):
                u.mlock(W, 2 * P)
        else:  # a user-mode-only context: a fault inside the kernel fails at once
            with pytest.raises(OSError) as exc:
                u.mlock(W, 2 * P)
            assert exc.value.errno == errno.ENOMEM


def test_userfaultfd_sigbus_feature() -> None:
    s = v.AddressSpace()
    s.mmap(W, 2 * P, RW, FIXED)
    fd = s.userfaultfd(v.UFFD_FEATURE_SIGBUS)
    s.uffd_register(fd, W, 2 * P, v.UFFDIO_REGISTER_MODE_MISSING)
    assert s.touch(W, P).fault == "SIGBUS"
    with pytest.raises(OSError) as exc:
        s.madvise(W, 2 * P, v.MADV_POPULATE_WRITE)
    assert exc.value.errno == errno.EFAULT


def test_hugetlb_sizes() -> None:
    for sizes, hintless in (((), errno.EINVAL), ((2 << 20,), errno.ENOMEM)):
        s = space(memory=Memory(hugetlb_sizes=sizes))
        with pytest.raises(OSError) as exc:
            s.mmap(None, 2 << 20, RW, ANON | v.MAP_HUGETLB)
        assert exc.value.errno == hintless
        with pytest.raises(OSError) as exc:
            s.mmap(W + P, P, RW, FIXED | v.MAP_HUGETLB)
        assert exc.value.errno == errno.EINVAL


def test_shmem_thp_placement() -> None:
    """With shmem THP enabled, shared anonymous memory and memfds are placed on huge-page boundaries."""
    top = W + (4 << 30) - 0x3000  # an unaligned top: the generic allocator would not align
    never = v.AddressSpace(mmap_limit=top)
    always = space(memory=Memory(thp_shmem="always"))
    always = v.AddressSpace(target=always.profile.target, mmap_limit=top)
    shared = v.MAP_SHARED | v.MAP_ANONYMOUS
    assert never.mmap(None, 4 << 20, RW, shared) % (2 << 20) != 0
    assert always.mmap(None, 4 << 20, RW, shared) % (2 << 20) == 0
    fd = always.memfd_create("m", 4 << 20)
    assert always.mmap(None, 4 << 20, RW, v.MAP_SHARED, fd) % (2 << 20) == 0


def test_shmem_thp_placement_matches_the_kernel() -> None:
    """Observed on 6.18.44-fc-v857 with shmem_enabled set to "always" (and "force"; "never" and "deny" give
    the generic addresses): shared anonymous memory and memfd mappings, even private ones, land on 2 MiB
    boundaries or at the offset's position within one."""
    doc = {"ops": [
        {"op": "mmap", "addr": None, "length": "12K", "prot": "r", "flags": ["private", "anonymous"]},
        {"op": "mmap", "addr": None, "length": "4M", "prot": "rw", "flags": ["shared", "anonymous"]},
        {"op": "mmap", "addr": None, "length": "12K", "prot": "r", "flags": ["private", "anonymous"]},
        {"op": "memfd", "name": "m", "size": "8M"},
        {"op": "mmap", "addr": None, "length": "4M", "prot": "rw", "flags": ["shared"], "fd": "m"},
        {"op": "mmap", "addr": None, "length": "6M", "prot": "rw", "flags": ["private"], "fd": "m", "offset": "1M"},
        {"op": "mmap", "addr": None, "length": "3M", "prot": "rw", "flags": ["shared", "anonymous"]}]}
    observed = {
        "always": ["0x7e00ffffd000", "0x7e00ffa00000", "0x7e00ffffa000", 0, "0x7e00ff600000", "0x7e00fef00000",
                   "0x7e00fec00000"],
        "never": ["0x7e00ffffd000", "0x7e00ffbfd000", "0x7e00ffbfa000", 0, "0x7e00ff7fa000", "0x7e00ff1fa000",
                  "0x7e00feefa000"],
    }
    base = builtin_profiles()["linux-6.18.44-nopku"]
    for mode in ("always", "force", "never", "deny"):
        memory = dataclasses.replace(base.target.memory, thp_shmem=mode)
        prof = dataclasses.replace(base, target=dataclasses.replace(base.target, memory=memory))
        rets = [r["ret"] for r in run_model(parse_program(doc), prof)["results"]]
        assert rets == observed["always" if mode in ("always", "force") else "never"], mode


def test_file_systems() -> None:
    ext4 = v.AddressSpace()
    fd = ext4.create_file("f")
    with pytest.raises(OSError) as exc:
        ext4.ftruncate(fd, 0xFFFFFFFF000 + P)
    assert exc.value.errno == errno.EFBIG
    xfs = space(files=Files(regular_fs="xfs", regular_max_bytes=(1 << 63) - 1))
    xfs.ftruncate(xfs.create_file("f"), 0xFFFFFFFF000 + P)
    tmpfs = space(files=Files(regular_fs="tmpfs"))
    fd = tmpfs.create_file("f", 4 * P)
    tmpfs.mmap(W, 4 * P, RW, v.MAP_SHARED | v.MAP_FIXED_NOREPLACE, fd)
    assert tmpfs.mm.vmas.lookup(W).file.inode.is_shmem  # type: ignore[union-attr]


def test_programs_run_with_their_profile() -> None:
    """run_model models the profile it is given; the same program differs between the two built-ins."""
    doc = json.loads((Path(__file__).parent / "regressions" / "exec-only-memory-is-not-readable.json").read_text())
    program = parse_program(doc)
    faults = {name: run_model(program, name)["results"][1]["fault"] for name in builtin_profiles()}
    assert faults == {"linux-6.18.44-pku": "SIGSEGV", "linux-6.18.44-nopku": None}
    prof = Profile(name="x", target=Target())
    assert run_model(program, prof)["results"][1]["fault"] == "SIGSEGV"
