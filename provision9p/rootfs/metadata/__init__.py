"""Guest metadata as QEMU's security models store it on the host."""

from __future__ import annotations

from pathlib import Path

from provision9p.rootfs.metadata.base import GuestStat, MetadataStore
from provision9p.rootfs.metadata.stores import MappedFileStore, PlainStore, XattrStore

__all__ = ["GuestStat", "MappedFileStore", "MetadataStore", "PlainStore", "XattrStore",
           "open_store"]


def open_store(model: str, root: Path, host_uid: int, host_gid: int) -> MetadataStore:
    """The store for a share's security model (`mapped` is QEMU's alias of mapped-xattr)."""
    if model in ("mapped-xattr", "mapped"):
        return XattrStore(root, host_uid, host_gid)
    if model == "mapped-file":
        return MappedFileStore(root, host_uid, host_gid)
    if model in ("passthrough", "none"):
        return PlainStore(root)
    raise ValueError(f"unknown security model {model!r}")
