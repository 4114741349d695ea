"""The tree builder: one entry, `build_tree`, from a package list to a plain Debian tree.

mmdebstrap builds by default: ~3x faster than debootstrap here (apt resolves and
downloads in one go, dpkg runs unsynced under eatmydata), it leaves no .debs behind
(they go to a cache), and apt verifies the suite's signature and every file's hash. debootstrap
stays for what mmdebstrap does not do: the `fakechroot` variant (a debootstrap variant,
a mode in mmdebstrap), a host without mmdebstrap (Debian before 11, other distros), and by
choice with PROVISION9P_BUILDER=debootstrap (for comparison). It cannot pin versions.

Packages are names or `name=version` (apt's syntax). A lock's versions go in as `pins`:
apt preferences choose the version of whatever the build installs without adding to it
(a lock lists the roles' packages too); image/pins.py serves those the mirror lost.
"""

from __future__ import annotations

import ctypes
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from provision9p import paths, ui
from provision9p.errors import BuildError, HostError, MirrorError
from provision9p.host.release import keyrings
from provision9p.rootfs import contain, rootless

BUILDER_ENV = "PROVISION9P_BUILDER"
BUILDERS = ("mmdebstrap", "debootstrap")
_HOOKS = Path("/usr/share/mmdebstrap/hooks")


@dataclass(frozen=True)
class Pin:
    """One package version a lock asks for, with the .deb's sha256 it recorded."""

    name: str
    version: str
    architecture: str
    sha256: str


@dataclass(frozen=True)
class TreeRequest:
    """What goes into a plain tree. `packages`: names or `name=version`. `pins`: the
    lock's versions, for whatever the build installs (not a list of what to install)."""

    suite: str
    arch: str
    variant: str
    components: tuple[str, ...]
    packages: tuple[str, ...]
    mirror: str
    pins: tuple[Pin, ...] = ()


def merge_packages(*lists: Iterable[str]) -> tuple[str, ...]:
    """One entry per package name, sorted; a `name=version` entry wins over a bare name."""
    by_name: dict[str, str] = {}
    for entry in (e for lst in lists for e in lst):
        name = entry.split("=", 1)[0]
        if "=" in entry or name not in by_name:
            by_name[name] = entry
    return tuple(sorted(by_name.values()))


def choose_builder(variant: str = "minbase", *, require: bool = True) -> str:
    """mmdebstrap when installed, else debootstrap; PROVISION9P_BUILDER overrides.

    With `require=False` (for cache keys) a missing builder is named, not an error.
    """
    wanted = os.environ.get(BUILDER_ENV, "") or ("debootstrap" if variant == "fakechroot" else "")
    if wanted and wanted not in BUILDERS:
        raise HostError(f"{BUILDER_ENV}={wanted} is not a tree builder",
                        hint=f"use one of {', '.join(BUILDERS)} or unset it")
    for name in ([wanted] if wanted else list(BUILDERS)):
        if shutil.which(name):
            return name
    if not require:
        return wanted or BUILDERS[0]
    raise HostError(f"{wanted or 'mmdebstrap'} is not installed",
                    hint=f"apt-get install {wanted or 'mmdebstrap'} "
                         "(or `provision9p doctor --install`)")


def build_tree(req: TreeRequest, target: Path, *, builder: str | None = None) -> None:
    """Build `req` into the empty directory `target` (the caller stages and cleans it)."""
    builder = builder or choose_builder(req.variant)
    if shutil.which(builder) is None:
        raise HostError(f"{builder} is not installed", hint=f"apt-get install {builder} "
                        "(or `provision9p doctor --install`)")
    if os.geteuid() != 0:
        raise HostError(f"{builder} needs root to build a root tree",
                        hint="run the build as root, or as a user with /etc/subuid lines "
                             "(rootfs/rootless.py)")
    if rootless.inside() and builder != "mmdebstrap":
        raise HostError(f"{builder} cannot build a root tree as a normal user",
                        hint="install mmdebstrap, or unset PROVISION9P_BUILDER")
    if builder == "debootstrap":
        if req.pins:
            raise BuildError("debootstrap cannot install a lock's versions",
                             hint="install mmdebstrap, or unset PROVISION9P_BUILDER")
        if pinned := [p for p in req.packages if "=" in p]:
            raise BuildError(f"debootstrap cannot install pinned versions ({pinned[0]}, ...)",
                             hint="install mmdebstrap, or unset PROVISION9P_BUILDER")
        _build(builder, req, target, _debootstrap_argv(req, target))
    elif not req.pins:
        _build(builder, req, target, _mmdebstrap_argv(req, target))
    else:
        from provision9p.image import pins

        with pins.sources(req) as (extra, hooks):
            _build(builder, req, target, _mmdebstrap_argv(req, target, extra, hooks))
        pins.check_tree(req, target)


def _build(builder: str, req: TreeRequest, target: Path, argv: list[str]) -> None:
    ui.info(f"    {builder} {req.suite}/{req.arch} ({req.variant}) from {req.mirror}")
    start = time.monotonic()
    rc, tail = _run_contained(builder, argv, start, target)
    if rc != 0:
        _raise_for(builder, rc, tail, target)
    if not rootless.inside():
        _make_devices(target)
    if builder == "mmdebstrap" and not rootless.inside():
        _keep_debs(target)
    ui.info(f"    {builder} finished in {time.monotonic() - start:.0f} s")


# What mmdebstrap's root mode puts in /dev (its @devfiles): name, mode, kind, target or
# (major, minor). Its unshare mode binds the host's nodes in while it runs instead.
_DEVICES: tuple[tuple[str, int, str, object], ...] = (
    ("console", 0o666, "c", (5, 1)), ("fd", 0o777, "l", "/proc/self/fd"),
    ("full", 0o666, "c", (1, 7)), ("null", 0o666, "c", (1, 3)),
    ("ptmx", 0o666, "c", (5, 2)), ("pts", 0o755, "d", None),
    ("random", 0o666, "c", (1, 8)), ("shm", 0o755, "d", None),
    ("stderr", 0o777, "l", "/proc/self/fd/2"), ("stdin", 0o777, "l", "/proc/self/fd/0"),
    ("stdout", 0o777, "l", "/proc/self/fd/1"), ("tty", 0o666, "c", (5, 0)),
    ("urandom", 0o666, "c", (1, 9)), ("zero", 0o666, "c", (1, 5)),
)


def _make_devices(tree: Path) -> None:
    """Root's tree gets the /dev that mmdebstrap's root mode would have made: chroot
    commands later (guest setup, the tree phase) write to /dev/null and read
    /dev/urandom. Made here, by provision9p as root, not by anything in the tree."""
    dev = tree / "dev"
    dev.mkdir(mode=0o755, exist_ok=True)
    for name, mode, kind, what in _DEVICES:
        path = dev / name
        if kind == "c" and path.is_file() and not path.is_symlink():
            path.unlink()  # debootstrap's mount point for the host's node
        if path.is_symlink() or path.exists():
            continue
        if kind == "l":
            os.symlink(str(what), path)
        elif kind == "d":
            path.mkdir()
            os.chmod(path, mode)
        else:
            assert isinstance(what, tuple)
            os.mknod(path, mode | stat.S_IFCHR, os.makedev(*what))
            os.chmod(path, mode)


def _run_contained(builder: str, argv: list[str], start: float,
                   target: Path) -> tuple[int, list[str]]:
    """mmdebstrap, its maintainer scripts and hooks contained (rootfs/contain.py): their
    own user, mount, UTS, IPC, PID and cgroup namespaces, every mount read-only but the
    cache (with the staging tree); /tmp their own."""
    # A normal user's tarball is assembled in mmdebstrap's temporary directory: in the
    # staging dir, a killed build's leftovers (the namespace's files) go with it, and the
    # .debs' hard links stay on one file system.
    env = dict(os.environ)
    if rootless.inside():
        env["TMPDIR"] = str(target)
    else:
        env["HOME"] = "/tmp"  # root's home is not the shifted ids' to read
    if builder == "debootstrap":
        # debootstrap binds the host's device nodes in where mknod fails only in "lxc"
        env["container"] = "lxc"
    # a file:// source in /tmp (a lock's repository, image/pins.py) stays visible
    read = [Path(m) for a in argv for m in re.findall(r"\bfile://(/tmp/\S+)", a)
            if Path(m).is_dir()]
    cache = paths.cache_home()
    # a target outside the cache (build_tree's callers in code) is writable too; the
    # .debs' hard links into it cannot cross the mounts, so they are copied then
    write = [cache] if target.resolve().is_relative_to(cache.resolve()) else [cache, target]
    return _run(contain.build_argv(write, read, "localhost", argv), start, env)


# apt's preferences for a lock's versions, while the base is built and while the
# tree-phase roles run (image/pins.py); the file does not stay in the tree
PREFERENCES = "etc/apt/preferences.d/provision9p-lock"


def preferences(pins: Sequence[Pin]) -> str:
    """apt preferences that make each locked version the candidate (1001: even a
    downgrade), whichever source serves it."""
    return "".join(f"Package: {p.name}\nPin: version {p.version}\nPin-Priority: 1001\n\n"
                   for p in pins)


def _mmdebstrap_argv(req: TreeRequest, target: Path, extra_sources: Sequence[str] = (),
                     extra_hooks: Sequence[str] = ()) -> list[str]:
    cache = _deb_cache()
    # apt re-checks each cached .deb against the signed index before using it
    sync_in = (f'mkdir -p "$1/var/cache/apt/archives" && '
               f'{{ cp -al {shlex.quote(str(cache))}/. "$1/var/cache/apt/archives/" 2>/dev/null'
               f' || cp -a {shlex.quote(str(cache))}/. "$1/var/cache/apt/archives/"; }}')
    # A normal user's base is a tarball (rootfs/rootless.py): a tree would leave files
    # of its subordinate ids in the cache. unshare mode, as root of contain.py's user
    # namespace (root's or a normal user's), makes no device nodes, which the namespace
    # could not make: root's tree gets them afterwards (_make_devices).
    user = rootless.inside()
    argv = [
        "mmdebstrap", "--mode=unshare",
        f"--variant={_mm_variant(req.variant)}",
        f"--architectures={req.arch}", f"--components={','.join(req.components)}",
        f"--include={','.join(req.packages)}",
        # debootstrap's merged /usr (usr-is-merged), not the usrmerge package with perl
        f"--hook-dir={_HOOKS / 'merged-usr'}",
        f"--hook-dir={_HOOKS / 'eatmydata'}",
        f"--setup-hook={sync_in}",
        # the .debs go to our cache after the build, see _keep_debs; the package lists
        # stay, as debootstrap leaves them: tree-phase `apt: name=...` works offline
        # (a tarball keeps the lists only: its .debs cannot be hard-linked out)
        "--skip=cleanup/apt/lists" if user else "--skip=cleanup/apt",
        # mmdebstrap deletes the essential set's .debs it downloaded: keep them, so they
        # reach the cache (no download next time) and the .deb store (a lock's promise)
        "--skip=essential/unlink",
    ]
    if req.pins:
        prefs = shlex.quote(preferences(req.pins))
        argv += [f'--setup-hook=printf %s {prefs} > "$1/{PREFERENCES}"',
                 f'--customize-hook=rm -f "$1/{PREFERENCES}"']
    argv += extra_hooks
    if user:  # _keep_debs' work, before mmdebstrap's cleanup removes them from the tarball
        argv.append(f'--customize-hook=cp -ln "$1"/var/cache/apt/archives/*.deb '
                    f'{shlex.quote(str(cache))}/ 2>/dev/null || true')
    argv += [f"--keyring={k}" for k in keyrings()]
    out = target / rootless.BASE_TAR if user else target
    return [*argv, req.suite, str(out), req.mirror, *extra_sources]


def _mm_variant(variant: str) -> str:
    # debootstrap's "-" (no --variant) is mmdebstrap's "debootstrap"
    return "debootstrap" if variant == "-" else variant


def _debootstrap_argv(req: TreeRequest, target: Path) -> list[str]:
    debs = paths.cache_home() / "debootstrap-debs"
    debs.mkdir(parents=True, exist_ok=True)
    argv = ["debootstrap", f"--arch={req.arch}", f"--components={','.join(req.components)}",
            f"--include={','.join(req.packages)}", f"--cache-dir={debs}"]
    if req.variant != "-":
        argv.append(f"--variant={req.variant}")
    return [*argv, req.suite, str(target), req.mirror]


def _deb_cache() -> Path:
    cache = paths.cache_home() / "mmdebstrap-debs"
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def _keep_debs(target: Path) -> None:
    """Hard-link the build's .debs into the cache and the .deb store, then empty apt's
    cache in the tree."""
    from provision9p.image import debstore

    archives = target / "var" / "cache" / "apt" / "archives"
    cache = _deb_cache()
    for deb in archives.glob("*.deb"):
        dest = cache / deb.name
        if not dest.exists():
            # new to this host: into the store by sha256 too, for a lock that outlives
            # the mirror's version (the others were stored when they were new)
            debstore.add(deb)
            try:
                os.link(deb, dest)
            except FileExistsError:  # another build cached it meanwhile
                pass
            except OSError:  # another file system: keep the tree clean all the same
                pass
        deb.unlink()
    for binary in (target / "var" / "cache" / "apt").glob("*.bin"):
        binary.unlink()


_PR_SET_PDEATHSIG = 1
# Opened here, not in the child: between fork and exec only this thread exists, and a
# dlopen there could wait forever on a loader lock another thread (a kernel download
# beside the build, jobs.beside) held at the fork.
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when provision9p dies, even by kill -9."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# debootstrap's per-package lines, and mmdebstrap's few phase lines
_DEBOOTSTRAP_PHASE = re.compile(r"^I: (Retrieving|Validating|Extracting|Unpacking|Configuring|"
                                r"Installing)\s+(\S+)")
_MM_PHASE = re.compile(r"^I: (downloading|extracting|installing|cleaning|"
                       r"creating|setting up)")


def _run(argv: Sequence[str], start: float,
         env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Run a builder, showing its phases; (exit status, its last lines)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env,
                            errors="replace", preexec_fn=_die_with_parent)
    assert proc.stdout is not None
    tail: list[str] = []
    phase, count, last_print = "", 0, 0.0
    try:
        for line in proc.stdout:
            tail = [*tail[-40:], line.rstrip()]
            now = time.monotonic()
            if _MM_PHASE.match(line):
                ui.info(f"    {line[3:].strip()} ({now - start:.0f} s)")
                continue
            m = _DEBOOTSTRAP_PHASE.match(line)
            if not m:
                continue
            if m.group(1) != phase:
                if phase:
                    ui.info(f"    {phase.lower()}: {count} done")
                phase, count = m.group(1), 0
            count += 1
            if now - last_print > 10:
                ui.info(f"    {phase.lower()} {m.group(2)} ({count}, {now - start:.0f} s so far)")
                last_print = now
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return rc, tail


def _raise_for(builder: str, rc: int, tail: list[str], target: Path) -> None:
    text = "\n".join(tail)
    log = target / "debootstrap" / "debootstrap.log"
    if log.is_file():
        text += "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    last = "\n".join(tail[-12:])
    if rc == contain.SETUP_FAILED and (line := next(
            (ln for ln in tail if ln.startswith("provision9p: cannot contain")), "")):
        raise HostError(f"the base tree's build could not be contained: {line}",
                        hint="it needs Linux 5.12 or later with user namespaces, and "
                             "provision9p's cache on a file system that takes id-mapped "
                             "mounts (ext4, XFS, Btrfs, tmpfs): set PROVISION9P_CACHE to a "
                             "directory on one")
    if "No space left on device" in text:
        raise HostError(f"{builder} ran out of disk space in {target.parent}:\n{last}",
                        hint="free some disk there (a root tree needs about 2 GiB while "
                             "it is built), or set PROVISION9P_CACHE to a bigger file system")
    if re.search(r"NO_PUBKEY|is not signed|signatures couldn't be verified|"
                 r"signatures were invalid", text):
        raise MirrorError(f"{builder} could not verify the mirror's signature:\n{last}",
                          hint="apt-get install debian-archive-keyring; for an archive of "
                               "your own, point PROVISION9P_KEYRING at its public keyring")
    if re.search(r"Unable to locate package|Couldn't find these debs|Version '[^']*' for "
                 r"'[^']*' was not found|has no installation candidate|not available", text):
        raise BuildError(f"{builder} could not find a package:\n{last}",
                         hint="check rootfs.packages for typos (and pinned versions) and the "
                              "suite's components")
    if re.search(r"Failed getting release file|Couldn't download|Temporary failure|"
                 r"Could not resolve|Connection refused|Failed getting|Failed to fetch|"
                 r"Release' does not have a Release file|404\s+Not Found", text):
        raise MirrorError(f"{builder} could not download from the mirror:\n{last}",
                          hint="check the mirror URL (rootfs.mirror or the host's apt "
                               "sources) and the network")
    raise BuildError(f"{builder} failed (exit {rc}):\n{last}",
                     hint="see the lines above; nothing was left on disk")
