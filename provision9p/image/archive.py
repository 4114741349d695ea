"""The image format: one PAX tar, compressed by zstd at a fixed level in one thread.

Members come in walk order (names sorted per directory) with numeric owners and the
guest's true owners, modes, devices, xattrs and ACLs (read through the root share's
MetadataStore, as `rootfs export` does); the kernel and initramfs follow under /boot.
A PAX global header carries the image's manifest (guest, kernel release, boot member
names, SOURCE_DATE_EPOCH), so it travels inside the bytes the digest covers.

Reading checks every member before it is handed on: no absolute names, no `..`, no
member under a symlink the archive made, hard links only to members already seen.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import zstandard

from provision9p.image.errors import ImageError
from provision9p.image.normalize import Rules
from provision9p.rootfs.export import tar_entries
from provision9p.rootfs.metadata.base import MetadataStore

FORMAT = 1
# zstd's own default level, in one thread: the same input and library give the same
# bytes. Measured on a 630 MB guest tar: level 3 takes 2.0 s of CPU for 170 MB, level 10
# 15 s for 149 MB; on two shared cores the extra 12% is not worth it.
ZSTD_LEVEL = 3
MANIFEST_KEY = "provision9p.image"
_KINDS = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE,
          tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE)


@dataclass(frozen=True)
class BootFile:
    """A file outside the tree that goes into the image's /boot (kernel, initramfs)."""

    name: str  # e.g. "boot/vmlinuz-6.1.0-41-amd64"
    source: Path


class _Hashing(io.RawIOBase):
    """A write-only file that hashes what goes through it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.sha256, self.size = out, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.out.write(view)
        self.sha256.update(view)
        self.size += len(view)
        return len(view)


def write_image(store: MetadataStore, out: Path, *, rules: Rules, boot: list[BootFile],
                manifest: dict[str, Any]) -> tuple[str, int]:
    """Write the store's tree as an image to `out` (a new file); its (sha256, size)."""
    boot_names = {f"./{b.name}" for b in boot}
    header = json.dumps({"format": FORMAT, **manifest}, sort_keys=True)
    with open(out, "xb") as raw:
        hashing = _Hashing(raw)
        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0)
        with cctx.stream_writer(cast(IO[bytes], hashing), closefd=False) as z, tarfile.open(
                fileobj=z, mode="w|", format=tarfile.PAX_FORMAT,
                pax_headers={MANIFEST_KEY: header}) as tar:
            for info, data in _filtered(store, rules, boot_names):
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
            for b in boot:
                data = b.source.read_bytes()
                info = tarfile.TarInfo(f"./{b.name}")
                info.size, info.mode, info.mtime = len(data), 0o644, rules.epoch
                tar.addfile(info, io.BytesIO(data))
        return hashing.sha256.hexdigest(), hashing.size


def _filtered(store: MetadataStore, rules: Rules,
              replaced: set[str]) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    """tar_entries less what the rules drop; a hard link whose first name was dropped
    becomes the regular file the later names link to."""
    moved: dict[str, str] = {}  # a dropped first name -> the member that took its place
    for entry in tar_entries(store):
        info, data = entry.info, entry.data
        if rules.dropped(entry.rel, info) or info.name in replaced:
            continue
        if info.islnk():
            if info.linkname in moved:
                info.linkname = moved[info.linkname]
            elif rules.dropped(info.linkname.removeprefix("./"), info):
                moved[info.linkname] = info.name
                data = store.read_bytes(entry.rel)
                info.type, info.linkname, info.size = tarfile.REGTYPE, "", len(data)
        if data is not None:
            data = rules.content(entry.rel, data)
            info.size = len(data)
        rules.clamp(info)
        yield info, data


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Member:
    """One checked member: its path in the tree (no leading ./, '' the root) and data."""

    path: str
    info: tarfile.TarInfo
    data: bytes | None


class Reader:
    """An image's members, each checked before it is handed on (see the module doc)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.manifest: dict[str, Any] = {}

    def __iter__(self) -> Iterator[Member]:
        dctx = zstandard.ZstdDecompressor()
        seen: dict[str, str] = {}  # path -> tar type of every member so far
        try:
            with self.path.open("rb") as raw, dctx.stream_reader(raw) as z, tarfile.open(
                    fileobj=z, mode="r|") as tar:
                self.manifest = _manifest(tar.pax_headers, self.path)
                for info in tar:
                    rel = check_member(info, seen, self.path)
                    data = None
                    if info.isreg():
                        f = tar.extractfile(info)
                        data = f.read() if f is not None else b""
                    seen[rel] = info.type.decode()
                    yield Member(rel, info, data)
        except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
            raise ImageError(f"{self.path} is not a readable image: {exc}",
                             hint="build it again (`provision9p image build`)") from exc


def _manifest(headers: Mapping[str, str], path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(headers[MANIFEST_KEY])
    except (KeyError, ValueError):
        raise ImageError(f"{path} has no provision9p manifest: not an image of this tool",
                         hint="images come from `provision9p image build`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ImageError(f"{path} is an image of another format "
                         f"({manifest.get('format') if isinstance(manifest, dict) else '?'})",
                         hint="build it again with this version of provision9p")
    return manifest


def _tree_path(name: str) -> str:
    return "" if name in (".", "./") else name.removeprefix("./").rstrip("/")


def check_member(info: tarfile.TarInfo, seen: dict[str, str], image: Path) -> str:
    """The member's path in the tree; ImageError when it could land outside it."""
    def refuse(why: str) -> ImageError:
        return ImageError(f"{image}: member {info.name!r} {why}; nothing was unpacked",
                          hint="this archive is not a safe image: do not use it")

    if info.name.startswith("/"):
        raise refuse("has an absolute name")
    rel = _tree_path(info.name)
    parts = rel.split("/") if rel else []
    if any(p in ("..", "") for p in parts):
        raise refuse("climbs out of the tree (`..`)")
    for i in range(1, len(parts)):
        if seen.get("/".join(parts[:i])) == tarfile.SYMTYPE.decode():
            raise refuse(f"lies under the symlink {'/'.join(parts[:i])!r}, "
                         "which unpacking would follow")
    if info.type not in _KINDS:
        raise refuse(f"is of a kind an image does not hold (type {info.type!r})")
    if info.islnk():
        target = _tree_path(info.linkname)
        if info.linkname.startswith("/") or ".." in target.split("/"):
            raise refuse(f"is a hard link out of the tree ({info.linkname!r})")
        if seen.get(target) not in (tarfile.REGTYPE.decode(), tarfile.AREGTYPE.decode()):
            raise refuse(f"is a hard link to {info.linkname!r}, not an earlier regular file")
    if os.sep != "/" or "\0" in rel:
        raise refuse("has a name this host cannot hold")
    return rel
