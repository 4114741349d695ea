"""The .deb store: every .deb a build used, kept by its sha256 under the cache.

A mirror serves a suite's current versions only; a lock made last month may name a
version that has since gone. The store keeps the files themselves, named by the hash
the lock records (taken from the signed Packages index), so a locked build can still
install them: the store's files are handed to the builder as a small local repository.
A file is checked against its name's hash whenever it is served.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from debian import debfile

from provision9p import paths
from provision9p.host.release import file_sha256


def store_dir() -> Path:
    return paths.cache_home() / "debs" / "sha256"


def path_of(sha256: str) -> Path:
    return store_dir() / f"{sha256}.deb"


def add(deb: Path) -> str:
    """Keep `deb` in the store (a hard link when it can be); returns its sha256."""
    sha = file_sha256(deb)
    dest = path_of(sha)
    if dest.is_file():
        return sha
    place(deb, dest)
    return sha


def add_all(debs: Iterable[Path]) -> int:
    """Keep every file of `debs`; the number kept."""
    count = 0
    for deb in debs:
        with contextlib.suppress(OSError):  # a file removed meanwhile: not ours to keep
            add(deb)
            count += 1
    return count


def fetch(sha256: str) -> Path | None:
    """The stored file of that hash, None when missing or damaged (a damaged one goes)."""
    if not sha256:
        return None
    path = path_of(sha256)
    if not path.is_file():
        return None
    if file_sha256(path) != sha256:
        path.unlink(missing_ok=True)
        return None
    return path


def place(src: Path, dest: Path) -> Path:
    """A stored file under another name (a hard link when it can be), e.g. where the
    kernel fetch keeps its .debs; replaced atomically, so never half there."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:  # another file system
            with src.open("rb") as f, tmp.open("wb") as out:
                while chunk := f.read(1 << 20):
                    out.write(chunk)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def cached_name(name: str, version: str, architecture: str) -> str:
    """apt's file name for a package in /var/cache/apt/archives (the epoch's colon quoted)."""
    return f"{name}_{version.replace(':', '%3a')}_{architecture}.deb"


@dataclass(frozen=True)
class StoredDeb:
    name: str
    version: str
    architecture: str
    sha256: str


def write_repository(debs: Iterable[StoredDeb], where: Path, *, suite: str) -> Path:
    """A flat apt repository in `where` serving `debs` from the store: Packages and an
    unsigned Release naming the suite (mmdebstrap takes only the suite's archive for the
    essential set). Its trust comes from the lock: every file matched its sha256."""
    where.mkdir(parents=True, exist_ok=True)
    stanzas = []
    for d in sorted(debs, key=lambda d: (d.name, d.architecture)):
        src = fetch(d.sha256)
        if src is None:
            raise FileNotFoundError(d.sha256)
        file = where / cached_name(d.name, d.version, d.architecture)
        file.unlink(missing_ok=True)
        try:
            os.link(src, file)
        except OSError:
            file.write_bytes(src.read_bytes())
        control = debfile.DebFile(str(file)).debcontrol()
        control["Filename"] = f"./{file.name}"
        control["Size"] = str(file.stat().st_size)
        control["SHA256"] = d.sha256
        stanzas.append(control.dump())
    packages = "\n".join(stanzas).encode()
    (where / "Packages").write_bytes(packages)
    (where / "Packages.gz").write_bytes(gzip.compress(packages, mtime=0))
    lines = [f"Suite: {suite}", f"Codename: {suite}", "Label: provision9p deb store",
             "SHA256:"]
    for name in ("Packages", "Packages.gz"):
        data = (where / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    (where / "Release").write_text("\n".join(lines) + "\n")
    return where
