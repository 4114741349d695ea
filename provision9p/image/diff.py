"""`image diff A B`: what differs between two images, path by path and field by field.

So a user can find why two builds disagree: each line names a path and the field that
differs (kind, content, mode, owner, time, xattr, link, device), or that it is only in one.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass
from pathlib import Path

from provision9p.image.archive import Reader


@dataclass(frozen=True)
class Facts:
    kind: str
    content: str  # sha256 of a regular file's data
    mode: int
    owner: tuple[int, int]
    time: int
    xattr: tuple[tuple[str, str], ...]
    link: str
    device: tuple[int, int]


def facts(path: Path) -> tuple[dict[str, Facts], dict[str, object]]:
    """Every member of an image, and its manifest."""
    out = {}
    reader = Reader(path)
    for m in reader:
        info = m.info
        out[m.path] = Facts(
            kind=_KIND.get(info.type, repr(info.type)),
            content=hashlib.sha256(m.data).hexdigest() if m.data is not None else "",
            mode=info.mode, owner=(info.uid, info.gid), time=int(info.mtime),
            xattr=tuple(sorted((k, v) for k, v in info.pax_headers.items()
                               if k.startswith("SCHILY."))),
            link=info.linkname, device=(info.devmajor, info.devminor))
    return out, reader.manifest


_KIND = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "directory",
         tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hard link", tarfile.CHRTYPE: "char device",
         tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "fifo"}


def diff(a: Path, b: Path) -> list[str]:
    """Lines `PATH: FIELD A -> B`, `PATH: only in A|B`; empty when the trees are equal."""
    fa, ma = facts(a)
    fb, mb = facts(b)
    lines = [f"(manifest) {k}: {ma.get(k)!r} -> {mb.get(k)!r}"
             for k in sorted(set(ma) | set(mb)) if ma.get(k) != mb.get(k)]
    for path in sorted(set(fa) | set(fb)):
        shown = "/" + path
        if path not in fb:
            lines.append(f"{shown}: only in A")
        elif path not in fa:
            lines.append(f"{shown}: only in B")
        else:
            lines += [f"{shown}: {line}" for line in _fields(fa[path], fb[path])]
    return lines


def _fields(x: Facts, y: Facts) -> list[str]:
    if x.kind != y.kind:
        return [f"kind {x.kind} -> {y.kind}"]
    out = []
    if x.content != y.content:
        out.append(f"content {x.content[:12]} -> {y.content[:12]}")
    if x.mode != y.mode:
        out.append(f"mode {x.mode:04o} -> {y.mode:04o}")
    if x.owner != y.owner:
        out.append(f"owner {x.owner[0]}:{x.owner[1]} -> {y.owner[0]}:{y.owner[1]}")
    if x.time != y.time:
        out.append(f"time {x.time} -> {y.time}")
    if x.xattr != y.xattr:
        names = sorted({k for k, _ in x.xattr} ^ {k for k, _ in y.xattr}
                       | {k for k, v in x.xattr if (k, v) not in y.xattr})
        out.append(f"xattr {', '.join(n.removeprefix('SCHILY.') for n in names)}")
    if x.link != y.link:
        out.append(f"link {x.link} -> {y.link}")
    if x.device != y.device:
        out.append(f"device {x.device[0]},{x.device[1]} -> {y.device[0]},{y.device[1]}")
    return out
