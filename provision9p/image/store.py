"""Images kept by digest under the cache: images/<sha256>/image.tar.zst and image.json.

The directory name is the promise: an image whose bytes no longer hash to it (truncated,
altered) is refused, with both digests, before anything reads a member.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision9p import paths
from provision9p.image.archive import sha256_of
from provision9p.image.errors import BadImageRef, ImageError

ARCHIVE = "image.tar.zst"
META = "image.json"
_DIGEST = re.compile(r"[0-9a-f]{64}")


def images_dir() -> Path:
    return paths.cache_home() / "images"


@dataclass(frozen=True)
class StoredImage:
    digest: str
    archive: Path
    meta: dict[str, Any]

    @property
    def short(self) -> str:
        return self.digest[:12]


def add(tmp: Path, digest: str, meta: dict[str, Any]) -> tuple[StoredImage, bool]:
    """Move a finished archive into the store; (the image, whether it was new)."""
    entry = images_dir() / digest
    if (entry / ARCHIVE).is_file():
        tmp.unlink()
        return load(entry), False
    staging = images_dir() / f".{digest}.staging-{os.getpid()}"
    staging.mkdir(parents=True)
    try:
        os.replace(tmp, staging / ARCHIVE)
        (staging / META).write_text(json.dumps({"digest": digest, **meta}, indent=2,
                                               sort_keys=True) + "\n")
        os.replace(staging, entry)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load(entry), True


def load(entry: Path) -> StoredImage:
    try:
        meta = json.loads((entry / META).read_text())
    except (OSError, ValueError):
        meta = {}
    return StoredImage(entry.name, entry / ARCHIVE, meta if isinstance(meta, dict) else {})


def all_images() -> list[StoredImage]:
    root = images_dir()
    if not root.is_dir():
        return []
    found = [load(e) for e in root.iterdir() if _DIGEST.fullmatch(e.name) and e.is_dir()]
    return sorted(found, key=lambda i: (str(i.meta.get("created", "")), i.digest))


def find(ref: str) -> StoredImage:
    """A stored image by its digest (`sha256:` prefix optional) or a unique prefix of it."""
    want = ref.removeprefix("sha256:").lower()
    if len(want) < 4 or not re.fullmatch(r"[0-9a-f]+", want):
        raise BadImageRef(f"{ref!r} is neither an image file nor a digest",
                          hint="name a stored image by (a prefix of) its digest, see "
                               "`provision9p image list`, or an image file's path")
    hits = [i for i in all_images() if i.digest.startswith(want)]
    if len(hits) != 1:
        why = "no stored image" if not hits else f"{len(hits)} stored images"
        raise BadImageRef(f"{why} with a digest starting {want}",
                          hint="see `provision9p image list`" if not hits else
                               "give more of the digest")
    return hits[0]


def resolve(ref: str) -> tuple[Path, str | None]:
    """(archive, expected digest) for a stored image or an image file's path.

    A file named `<sha256>.tar.zst` promises that digest as the store does."""
    path = Path(ref)
    if path.is_file():
        name = path.name.removesuffix(".tar.zst").removeprefix("sha256:")
        return path, name if _DIGEST.fullmatch(name) else None
    if "/" in ref or ref.endswith(".zst"):
        raise BadImageRef(f"no image file at {ref}", hint="check the path")
    image = find(ref)
    return image.archive, image.digest


def verified(ref: str) -> Path:
    """The archive `ref` names, after its bytes were checked against its digest."""
    archive, expected = resolve(ref)
    if expected is not None:
        check_digest(archive, expected)
    return archive


def check_digest(archive: Path, expected: str) -> None:
    found = sha256_of(archive)
    if found != expected:
        raise ImageError(f"{archive} is damaged: its digest is sha256:{found}, "
                         f"expected sha256:{expected}; nothing was unpacked",
                         hint="remove it (`provision9p image rm "
                              f"{expected[:12]}`) and build it again")


def remove(ref: str) -> StoredImage:
    image = find(ref)
    entry = image.archive.parent
    doomed = entry.with_name(f".{entry.name}.removing-{os.getpid()}")
    os.replace(entry, doomed)  # gone from the store at once, even if the rmtree is cut short
    shutil.rmtree(doomed)
    return image
