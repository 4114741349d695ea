"""Guest metadata as QEMU's security models store it on the host."""

from __future__ import annotations

from pathlib import Path

from provision9p.rootfs.metadata.base import GuestStat, MetadataStore
from provision9p.rootfs.metadata.stores import (
    MappedFileStore,
    MappedStore,
    PlainStore,
    XattrStore,
)

__all__ = ["GuestStat", "MappedFileStore", "MappedStore", "MetadataStore", "PlainStore",
           "XattrStore", "open_store"]


def open_store(model: str, root: Path, host_uid: int, host_gid: int) -> MetadataStore:
    """The store of the security model a validated lab names (rootfs.security decides)."""
    from provision9p.rootfs.security import security_model  # security imports this package

    return security_model(model).store(root, host_uid, host_gid)
