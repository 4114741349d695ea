"""The Debian mirror: find it in the host's apt sources, fetch single packages from it.

The guest kernel comes straight from the suite's Packages index, without apt, so the
host needs no apt configuration for the guest's suite or architecture. Every file is
checked the way apt checks it (host/release.py): InRelease by its signature, the
Packages index by its hash in that Release, the .deb by its hash in the index. The mirror
itself is never written into the repository: it is read from the host at run time,
and a lab can override it (rootfs.mirror).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import hashlib
import json
import lzma
import mmap
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from debian import deb822

from provision9p import paths, ui
from provision9p.errors import HostError, MirrorError
from provision9p.host.release import (
    Expected,
    Release,
    matches,
    mismatch,
    parse_release,
    verify_signature,
)

SOURCES_LIST = Path("/etc/apt/sources.list")
SOURCES_DIR = Path("/etc/apt/sources.list.d")
# A suite's InRelease changes a few times a day; an hour keeps reruns offline-fast (the
# Packages index is reused for as long as the cached InRelease vouches for it).
INDEX_TTL = 3600.0
# Downloads above this size get a progress bar (or lines).
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
    """`deb [opts] URI suite component...` lines of a classic sources.list.

    Written by hand: python-debian reads deb822 only, not this one-line form (python-apt's
    aptsources does, but it is not on PyPI)."""
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
    for stanza in deb822.Deb822.iter_paragraphs(text.splitlines(), use_apt_pkg=False):
        types = stanza.get("Types", "").split()
        if "deb" not in types or stanza.get("Enabled", "yes").strip().lower() == "no":
            continue
        yield (stanza.get("URIs", "").split(), stanza.get("Suites", "").split(),
               stanza.get("Components", "").split())


# --- the signed Release and the Packages index ----------------------------------------

_release_memo: dict[tuple[Path, int], Release] = {}
_index_memo: dict[tuple[Path, str], PackageIndex] = {}


def signed_release(*, suite: str, mirror: str) -> Release:
    """The suite's InRelease, its signature checked by gpgv, cached on disk for INDEX_TTL.

    The file enters the cache only once its signature is good; the cached copy is
    checked again when a process first reads it (a keyring may have changed since)."""
    mirror = mirror.rstrip("/")
    url = f"{mirror}/dists/{suite}/InRelease"
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    cached = paths.cache_home() / "apt" / f"{suite}_{key}.InRelease"
    if not _fresh(cached):
        # Two guests of one `up` (threads) or two runs want it at once: one downloads it
        # (both would write the same .unverified file), the other then finds it fresh.
        with cache_entry_lock(cached, f"the {suite} InRelease"):
            if not _fresh(cached):
                unverified = cached.with_name(f".{cached.name}.unverified")
                try:
                    _download(url, unverified, what=f"{suite} InRelease")
                    release = _load_release(unverified, suite=suite, url=url)
                    os.replace(unverified, cached)
                    _release_memo.clear()
                    _release_memo[(cached, cached.stat().st_mtime_ns)] = release
                    return release
                except MirrorError as exc:
                    if not cached.exists() or unverified.exists():
                        raise  # no copy to fall back on, or the mirror's copy is bad: say so
                    ui.warn(f"using the cached InRelease of {suite}, the mirror "
                            f"failed: {exc.message}")
                finally:
                    unverified.unlink(missing_ok=True)
    memo_key = (cached, cached.stat().st_mtime_ns)
    if memo_key not in _release_memo:
        _release_memo[memo_key] = _load_release(cached, suite=suite, url=url)
    return _release_memo[memo_key]


def _fresh(cached: Path) -> bool:
    return cached.exists() and time.time() - cached.stat().st_mtime < INDEX_TTL


def _load_release(path: Path, *, suite: str, url: str) -> Release:
    text, signer = verify_signature(path, what=url)
    return parse_release(text, suite=suite, origin=url.rsplit("/dists/", 1)[0],
                         signer=signer)


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
        # several guests of one `up` share a pid: name the guest too
        guest = ui.current_guest()
        maker = f"pid {os.getpid()}" + (f" (for {guest})" if guest else "")
        os.pwrite(fd, f"{maker} is making it\n".encode(), 0)
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
                  component: str = "main") -> PackageIndex:
    """The suite's Packages index as name -> stanzas, verified by its hash in the signed
    Release; the cached copy is reused while that Release vouches for it."""
    mirror = mirror.rstrip("/")
    release = signed_release(suite=suite, mirror=mirror)
    name, expected = _index_entry(release, component, arch, mirror)
    url = f"{mirror}/dists/{suite}/{name}"
    key = hashlib.sha256(url.encode()).hexdigest()[:16]  # the name earlier versions used
    cached = (paths.cache_home() / "apt"
              / f"{suite}_{component}_{arch}_{key}.{name.rsplit('/', 1)[-1]}")
    memo_key = (cached, expected.sha256)
    if memo_key in _index_memo:
        return _index_memo[memo_key]
    what = f"the {suite}/{component} Packages index for {arch}"
    with cache_entry_lock(cached, what):
        if not matches(cached, expected):
            by_hash = f"{url.rsplit('/', 1)[0]}/by-hash/SHA256/{expected.sha256}"
            try:
                # by-hash names never change, so a mirror mid-sync still serves the right one
                _download(by_hash if release.by_hash else url, cached, what=what,
                          expected=expected)
            except MirrorError:
                if not release.by_hash:
                    raise
                _download(url, cached, what=what, expected=expected)
        index = _unpacked_index(cached, expected.sha256)
        if index is None:
            data = cached.read_bytes()
            try:
                raw = lzma.decompress(data) if name.endswith(".xz") else gzip.decompress(data)
            except (lzma.LZMAError, OSError, EOFError) as exc:
                cached.unlink(missing_ok=True)
                raise MirrorError(f"the Packages index from {url} does not decompress "
                                  f"({exc})",
                                  hint="run the command again to download it afresh") from exc
            index = parse_packages(raw)
            _keep_unpacked(cached, expected.sha256, index)
    _index_memo[memo_key] = index
    return index


# Each process that builds a guest looks up its kernel in the Packages index; unpacking
# bookworm's main (xz) and finding its ~63,000 stanzas took 1.1 s of CPU every time. The
# unpacked text and where each stanza starts are kept beside the .xz instead, tied to its
# hash: a later process maps the text and reads the positions (tens of ms).
def _unpacked_paths(cached: Path) -> tuple[Path, Path]:
    return (cached.with_name(cached.name + ".unpacked"),
            cached.with_name(cached.name + ".stanzas.json"))


def _unpacked_index(cached: Path, sha256: str) -> PackageIndex | None:
    """The kept unpacked index, if it was made from the .xz of this hash."""
    text_path, at_path = _unpacked_paths(cached)
    try:
        meta = json.loads(at_path.read_text())
        with open(text_path, "rb") as f:
            if meta.get("sha256") != sha256 or os.fstat(f.fileno()).st_size != meta["size"]:
                return None
            text = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if meta["size"] else b""
    except (OSError, ValueError, KeyError, TypeError):
        return None
    at = meta.get("at")
    if not isinstance(at, dict):
        return None
    return PackageIndex(text, at)


def _keep_unpacked(cached: Path, sha256: str, index: PackageIndex) -> None:
    """Write the unpacked text and its stanza positions (each renamed into place, the
    positions last: they name the hash the text belongs to). A full disk only costs the
    next process the unpacking again."""
    text_path, at_path = _unpacked_paths(cached)
    at_path.unlink(missing_ok=True)
    try:
        for path, data in ((text_path, bytes(index.text)),
                           (at_path, json.dumps({"sha256": sha256, "size": len(index.text),
                                                 "at": index.positions}).encode())):
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
    except OSError:
        at_path.unlink(missing_ok=True)


def _index_entry(release: Release, component: str, arch: str,
                 mirror: str) -> tuple[str, Expected]:
    for suffix in (".xz", ".gz"):
        name = f"{component}/binary-{arch}/Packages{suffix}"
        if name in release.files:
            return name, release.files[name]
    raise MirrorError(f"the signed Release of {release.codename or release.suite} at "
                      f"{mirror} lists no {component}/binary-{arch}/Packages index",
                      hint="check the architecture and the component (main, contrib, ...)")


# The `Package:` line that opens (by convention, but not necessarily) each stanza.
_PACKAGE_LINE = re.compile(rb"^Package:[ \t]*(\S+)", re.M)


class PackageIndex(Mapping[str, list[Package]]):
    """A Packages file as name -> stanzas (a suite rarely has two versions).

    Stanzas are parsed by python-debian (deb822.Packages) when first looked up. Parsing
    all of bookworm's main (~63,000 stanzas) with it up front takes about 6x as long as
    the hand-written parser it replaced (16 s against 2.4 s on a loaded 2-core host;
    apt_pkg, its fast backend, is not on PyPI), and a kernel fetch looks up two; so only
    where each stanza is (its `Package:` line) is found up front, with one regular
    expression (0.7 s for the same file, the two lookups included), or read from the
    positions kept with the unpacked file (package_index)."""

    def __init__(self, text: bytes | mmap.mmap,
                 positions: dict[str, list[int]] | None = None) -> None:
        self.text = text
        if positions is None:
            positions = {}
            for m in _PACKAGE_LINE.finditer(text):
                positions.setdefault(m.group(1).decode("utf-8", "replace"),
                                     []).append(m.start())
        self.positions = positions
        self._parsed: dict[str, list[Package]] = {}

    def __getitem__(self, name: str) -> list[Package]:
        if name not in self._parsed:
            stanzas = (self._stanza(at) for at in self.positions[name])
            self._parsed[name] = [p for p in stanzas if p is not None]
        return self._parsed[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.positions)

    def __len__(self) -> int:
        return len(self.positions)

    def _stanza(self, at: int) -> Package | None:
        start = self.text.rfind(b"\n\n", 0, at)
        end = self.text.find(b"\n\n", at)
        raw = self.text[start + 2 if start >= 0 else 0:end if end >= 0 else len(self.text)]
        st = deb822.Packages(raw.decode("utf-8", "replace"))
        if "Filename" not in st:
            return None
        return Package(name=st["Package"], version=st.get("Version", ""),
                       filename=st["Filename"], sha256=st.get("SHA256", "").lower(),
                       size=int(st.get("Size", "0") or 0), depends=st.get("Depends", ""),
                       provides=st.get("Provides", ""))


def parse_packages(text: str | bytes) -> PackageIndex:
    """Parse a Packages file into name -> stanzas."""
    return PackageIndex(text.encode() if isinstance(text, str) else text)


def resolve(name: str, index: Mapping[str, list[Package]]) -> Package | None:
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
    return fetch_entry(pkg, suite=suite, mirror=mirror)


def fetch_entry(pkg: Package, *, suite: str, mirror: str,
                progress: DownloadProgress | None = None) -> Path:
    """Download the .deb of one index stanza into the .deb cache, verified against it."""
    if not pkg.sha256:
        raise MirrorError(f"the Packages index of {suite} at {mirror} has no SHA256 for "
                          f"{pkg.name} {pkg.version}: it cannot be verified",
                          hint="use an up-to-date Debian mirror (rootfs.mirror)")
    expected = Expected(pkg.sha256, pkg.size, f"the Packages index of {suite}")
    dest = paths.cache_home() / "debs" / Path(pkg.filename).name
    with cache_entry_lock(dest, f"{pkg.name} {pkg.version}"):
        if matches(dest, expected):
            return dest
        url = f"{mirror.rstrip('/')}/{pkg.filename}"
        _download(url, dest, what=f"{pkg.name} {pkg.version}", expected=expected,
                  progress=progress)
    return dest


def _clean_stale_parts(dest: Path) -> None:
    """Remove the .part files of downloads whose run was killed (its pid is gone)."""
    for part in dest.parent.glob(f".{dest.name}.*.part"):
        pid = part.name.removeprefix(f".{dest.name}.").split(".", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            part.unlink(missing_ok=True)


# Reports a download: called with (what, total bytes), gives `advance(nbytes)` for the
# body of a with-statement (ui.download: a bar on a terminal, plain lines elsewhere).
DownloadProgress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


def _download(url: str, dest: Path, *, what: str, expected: Expected | None = None,
              progress: DownloadProgress | None = None) -> None:
    """Stream `url` to `dest` through a temp file in the same directory, then rename;
    with `expected`, only a file of that size and SHA256 is renamed into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_parts(dest)
    if expected is not None and expected.size:
        check_space(dest.parent, expected.size, what)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.{os.getpid()}.",
                                    suffix=".part")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    total = done = 0
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
            total = int(resp.headers.get("Content-Length") or
                        (expected.size if expected else 0))
            report = progress or ui.download
            # small files (an InRelease) are not worth a bar or a line
            with (report(what, total) if total > PROGRESS_MIN
                  else contextlib.nullcontext(_ignore)) as advance:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    advance(len(chunk))
        if expected and (done != expected.size or digest.hexdigest() != expected.sha256):
            raise mismatch(what, url, expected, sha256=digest.hexdigest(), size=done)
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


def _ignore(_n: int) -> None:
    pass
