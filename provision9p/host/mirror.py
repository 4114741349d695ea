"""The Debian mirror: find it in the host's apt sources, fetch single packages from it.

The guest kernel comes straight from the suite's Packages index, without apt, so the
host needs no apt configuration for the guest's suite or architecture. The mirror
itself is never written into the repository: it is read from the host at run time,
and a lab can override it (rootfs.mirror).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import lzma
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from provision9p import paths, ui
from provision9p.errors import HostError, MirrorError

SOURCES_LIST = Path("/etc/apt/sources.list")
SOURCES_DIR = Path("/etc/apt/sources.list.d")
# Packages indexes change rarely within a run; an hour keeps reruns offline-fast.
INDEX_TTL = 3600.0
# Downloads above this size get progress lines.
PROGRESS_MIN = 4 * 1024 * 1024
TIMEOUT = 60.0
_SET_HINT = "set rootfs.mirror in the lab file (e.g. the URL of a Debian mirror's /debian)"


@dataclass(frozen=True)
class Package:
    """One stanza of a Packages index: enough to download and verify the .deb."""

    name: str
    version: str
    filename: str  # pool path relative to the mirror
    sha256: str
    size: int
    depends: str = ""
    provides: str = ""


# --- the host's apt sources -------------------------------------------------------------


def host_mirror(sources_list: Path = SOURCES_LIST, sources_dir: Path = SOURCES_DIR) -> str:
    """The URL of the first `deb` source for Debian main in the host's apt configuration.

    apt reads sources.list first, then sources.list.d/ in name order; so do we. Security
    and updates suites are skipped: they are not full mirrors.
    """
    entries: list[tuple[list[str], list[str], list[str]]] = []
    if sources_list.is_file():
        entries += _one_line_entries(_read(sources_list))
    if sources_dir.is_dir():
        for f in sorted(sources_dir.iterdir()):
            if f.suffix == ".list" and f.is_file():
                entries += _one_line_entries(_read(f))
            elif f.suffix == ".sources" and f.is_file():
                entries += _deb822_entries(_read(f))
    for uris, suites, components in entries:
        if "main" not in components:
            continue
        if not any(_is_base_suite(s) for s in suites):
            continue
        for uri in uris:
            if urllib.parse.urlsplit(uri).scheme in ("http", "https", "file", "ftp"):
                return uri.rstrip("/")
    raise MirrorError("no Debian mirror for `main` found in the host's apt sources "
                      f"({sources_list}, {sources_dir}/*.sources)", hint=_SET_HINT)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        raise MirrorError(f"cannot read {path}: {exc.strerror}", hint=_SET_HINT) from exc


def _is_base_suite(suite: str) -> bool:
    return not re.search(r"[-/](security|updates|backports|proposed-updates)$", suite)


def _one_line_entries(text: str) -> Iterator[tuple[list[str], list[str], list[str]]]:
    """`deb [opts] URI suite component...` lines of a classic sources.list."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        rest = line[4:].strip()
        if rest.startswith("["):
            end = rest.find("]")
            if end < 0:
                continue
            rest = rest[end + 1:]
        words = rest.split()
        if len(words) >= 3:
            yield [words[0]], [words[1]], words[2:]


def _deb822_entries(text: str) -> Iterator[tuple[list[str], list[str], list[str]]]:
    """Stanzas of a deb822 `.sources` file (sources.list(5)), enabled `deb` ones only."""
    for stanza in _stanzas(line for line in text.splitlines() if not line.startswith("#")):
        types = stanza.get("types", "").split()
        if "deb" not in types or stanza.get("enabled", "yes").strip().lower() == "no":
            continue
        yield (stanza.get("uris", "").split(), stanza.get("suites", "").split(),
               stanza.get("components", "").split())


def _stanzas(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """RFC 822-style paragraphs: `Key: value`, continuation lines start with a blank."""
    current: dict[str, str] = {}
    key = ""
    for line in lines:
        if not line.strip():
            if current:
                yield current
            current, key = {}, ""
        elif line[0] in " \t":
            if key:
                current[key] += "\n" + line.strip()
        elif ":" in line:
            k, _, v = line.partition(":")
            key = k.strip().lower()
            current[key] = v.strip()
    if current:
        yield current


# --- the Packages index ----------------------------------------------------------------

_index_memo: dict[Path, dict[str, list[Package]]] = {}


@contextmanager
def cache_entry_lock(target: Path, what: str) -> Iterator[None]:
    """Hold the lock of one cache entry (a .deb, a base tree, an extracted kernel).

    Two runs that want the same entry at once (two labs' `up`) build it once: the second
    waits here, then finds it complete. The lock is an flock, so a run killed with -9
    releases it; the files it left half-made are staging files nobody takes for whole.
    """
    # kept apart from the entries, so a cache directory lists only what it caches
    locks = paths.cache_home() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(os.fsencode(target.absolute())).hexdigest()[:12]
    path = locks / f"{target.name}.{digest}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another run"
            ui.info(f"    waiting for {what}: {holder}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} is making it\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def check_space(where: Path, need: int, what: str) -> None:
    """Refuse up front when `where` has less than `need` bytes free for `what`."""
    where.mkdir(parents=True, exist_ok=True)
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise HostError(f"not enough space in {where} for {what}: it needs "
                        f"{_mib(need)}, {_mib(free)} free", hint=_SPACE_HINT)


_SPACE_HINT = ("free some disk there, or set PROVISION9P_CACHE to a directory on a bigger "
               "file system")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def package_index(*, arch: str, suite: str, mirror: str,
                  component: str = "main") -> dict[str, list[Package]]:
    """The suite's Packages index as name -> stanzas, cached on disk for INDEX_TTL."""
    mirror = mirror.rstrip("/")
    url = f"{mirror}/dists/{suite}/{component}/binary-{arch}/Packages.xz"
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    cached = paths.cache_home() / "apt" / f"{suite}_{component}_{arch}_{key}.Packages.xz"
    with cache_entry_lock(cached, f"the {suite} Packages index"):
        return _package_index(url, cached, arch=arch, suite=suite, component=component)


def _package_index(url: str, cached: Path, *, arch: str, suite: str,
                   component: str) -> dict[str, list[Package]]:
    fresh = cached.exists() and time.time() - cached.stat().st_mtime < INDEX_TTL
    if not fresh:
        try:
            _download(url, cached, what=f"{suite}/{component} Packages index for {arch}")
            _index_memo.pop(cached, None)
        except MirrorError as exc:
            if not cached.exists():
                raise
            ui.warn(f"using the cached Packages index, the mirror failed: {exc.message}")
    if cached not in _index_memo:
        try:
            text = lzma.decompress(cached.read_bytes()).decode("utf-8", "replace")
        except lzma.LZMAError as exc:
            cached.unlink(missing_ok=True)
            raise MirrorError(f"the Packages index from {url} is corrupt ({exc})",
                              hint="run the command again to download it afresh") from exc
        _index_memo[cached] = parse_packages(text)
    return _index_memo[cached]


def parse_packages(text: str) -> dict[str, list[Package]]:
    """Parse a Packages file into name -> stanzas (a suite rarely has two versions)."""
    index: dict[str, list[Package]] = {}
    for st in _stanzas(text.splitlines()):
        if "package" not in st or "filename" not in st:
            continue
        pkg = Package(name=st["package"], version=st.get("version", ""),
                      filename=st["filename"], sha256=st.get("sha256", ""),
                      size=int(st.get("size", "0") or 0), depends=st.get("depends", ""),
                      provides=st.get("provides", ""))
        index.setdefault(pkg.name, []).append(pkg)
    return index


def resolve(name: str, index: dict[str, list[Package]]) -> Package | None:
    """The package that really holds `name`'s files.

    A kernel metapackage (linux-image-amd64) only Depends on the versioned image package
    (linux-image-6.1.0-NN-amd64); follow that chain to the package with the kernel in it.
    """
    seen: set[str] = set()
    pin: str | None = None
    while name not in seen:
        seen.add(name)
        candidates = index.get(name, [])
        if not candidates:
            return None
        pkg = next((p for p in candidates if p.version == pin), candidates[-1])
        if not name.startswith("linux-image-") or re.match(r"linux-image-\d", name):
            return pkg
        nxt = _kernel_dependency(pkg.depends)
        if nxt is None:
            return pkg
        name, pin = nxt
    return None


def _kernel_dependency(depends: str) -> tuple[str, str | None] | None:
    """The first `linux-image-*` in a Depends field, with its `(= version)` pin."""
    for clause in depends.split(","):
        first = clause.split("|")[0].strip()
        m = re.match(r"(linux-image-[^\s(]+)\s*(?:\(\s*=\s*([^)\s]+)\s*\))?", first)
        if m:
            return m.group(1), m.group(2)
    return None


# --- downloads --------------------------------------------------------------------------


def fetch_package(name: str, *, arch: str, suite: str, mirror: str,
                  components: tuple[str, ...] = ("main",)) -> Path:
    """Download `name` (a kernel metapackage resolves to its image) into the .deb cache.

    The file is verified against the index's SHA256 and renamed into place only then,
    so the cache never holds a half file; a cached .deb of the right size is reused.
    """
    for component in components:
        index = package_index(arch=arch, suite=suite, mirror=mirror, component=component)
        pkg = resolve(name, index)
        if pkg is not None:
            break
    else:
        raise MirrorError(
            f"package {name!r} is not in {suite} ({', '.join(components)}) for {arch} "
            f"at {mirror}",
            hint="check the package name (apt-cache search linux-image), the suite and "
                 "the architecture",
        )
    dest = paths.cache_home() / "debs" / Path(pkg.filename).name
    with cache_entry_lock(dest, f"{pkg.name} {pkg.version}"):
        if dest.exists() and dest.stat().st_size == pkg.size:
            return dest
        url = f"{mirror.rstrip('/')}/{pkg.filename}"
        _download(url, dest, what=f"{pkg.name} {pkg.version}", sha256=pkg.sha256,
                  size=pkg.size)
    return dest


def _clean_stale_parts(dest: Path) -> None:
    """Remove the .part files of downloads whose run was killed (its pid is gone)."""
    for part in dest.parent.glob(f".{dest.name}.*.part"):
        pid = part.name.removeprefix(f".{dest.name}.").split(".", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            part.unlink(missing_ok=True)


def _download(url: str, dest: Path, *, what: str, sha256: str = "", size: int = 0) -> None:
    """Stream `url` to `dest` through a temp file in the same directory, then rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_parts(dest)
    if size:
        check_space(dest.parent, size, what)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.{os.getpid()}.",
                                    suffix=".part")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    start = time.monotonic()
    total = done = 0
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
            total = int(resp.headers.get("Content-Length") or size or 0)
            next_report = 0.0
            loud = total > PROGRESS_MIN
            if loud:
                ui.info(f"    downloading {what} ({total / 2**20:.1f} MiB)")
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if loud and total and done / total >= next_report:
                    ui.info(f"      {done / 2**20:6.1f} / {total / 2**20:.1f} MiB")
                    next_report = done / total + 0.25
        if sha256 and digest.hexdigest() != sha256.lower():
            raise MirrorError(f"{url} does not match its SHA256 in the Packages index",
                              hint="the mirror may be mid-sync; try again later")
        if size and done != size:
            raise MirrorError(f"{url} has {done} bytes, the index says {size}",
                              hint="the mirror may be mid-sync; try again later")
        os.replace(tmp, dest)
    except urllib.error.HTTPError as exc:
        hint = ("the mirror does not have it: check the suite, architecture and "
                "rootfs.mirror" if exc.code == 404 else "try again, or set rootfs.mirror")
        raise MirrorError(f"cannot fetch {url}: HTTP {exc.code} {exc.reason}",
                          hint=hint) from exc
    except urllib.error.URLError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise MirrorError(f"cannot fetch {url}: {reason}",
                          hint="check the network and the mirror URL, or " + _SET_HINT) from exc
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            reason = getattr(exc, "reason", None) or exc
            raise MirrorError(f"cannot fetch {url}: {reason}", hint="check the network "
                              "and the mirror URL, or " + _SET_HINT) from exc
        need = f"it needs {_mib(total)}" if total else f"{_mib(done)} fitted"
        raise HostError(f"{dest.parent} is full: downloading {what} failed ({need})",
                        hint=_SPACE_HINT) from None
    finally:
        tmp.unlink(missing_ok=True)
    if total > PROGRESS_MIN:
        secs = time.monotonic() - start
        ui.info(f"    {what}: {done / 2**20:.1f} MiB in {secs:.1f} s")
