"""QEMU's four security models for a local 9P share, one object each.

A share's model decides where the guest's owners and modes live on the host, whether
a tree must be converted before QEMU can serve it, how it is exported back, QEMU's
`-fsdev` option, libvirt's access mode, and whether QEMU must run as root. The lab
carries the model's canonical name (validation folds QEMU's alias `mapped` into
mapped-xattr); `model_of(share)` is the one place that turns it into the object.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import ClassVar

from provision9p.lab.model import Share
from provision9p.rootfs.convert import ConvertReport, convert_in_place
from provision9p.rootfs.export import export_tar, export_tree
from provision9p.rootfs.metadata.base import MetadataStore
from provision9p.rootfs.metadata.stores import (
    MappedFileStore,
    MappedStore,
    PlainStore,
    XattrStore,
)


class OwnerOnHost(Enum):
    """Where the owner of a file the guest writes ends up on the host (what verify checks)."""

    XATTRS = "in user.virtfs.* xattrs of a file QEMU's user owns"
    METADATA_FILES = "in .virtfs_metadata files; the file itself is QEMU's user's"
    HOST_OWNER = "as the host file's own owner"
    NOT_STORED = "nowhere: the host file is QEMU's user's and the guest's chown is ignored"

    @property
    def guest_owner_kept(self) -> bool:
        """Whether the guest reads back the owner it set."""
        return self is not OwnerOnHost.NOT_STORED

    @property
    def kept_apart(self) -> bool:
        """Whether the guest's owner is kept beside a host file that stays QEMU's user's."""
        return self in (OwnerOnHost.XATTRS, OwnerOnHost.METADATA_FILES)


class SecurityModel:
    """One security model; subclasses only fill in the facts and the store."""

    name: ClassVar[str]  # QEMU's security_model= value
    # Guest metadata kept apart from the host's: QEMU runs unprivileged, a real tree
    # must be converted, and host symlinks and device nodes are unreadable in the guest.
    mapped: ClassVar[bool] = False
    qemu_needs_root: ClassVar[bool] = False
    needs_user_xattrs: ClassVar[bool] = False  # the share's file system must take user.*
    libvirt_accessmode: ClassVar[str | None]  # None: libvirt has no such mode
    owner_on_host: ClassVar[OwnerOnHost]

    def __repr__(self) -> str:
        return f"<security model {self.name}>"

    def store(self, root: Path, host_uid: int = -1, host_gid: int = -1) -> MetadataStore:
        """The share at `root` seen as the guest sees it; host ids are QEMU's user's."""
        return PlainStore(root, host_uid, host_gid)

    def convert(self, tree: Path, *, host_uid: int, host_gid: int,
                capabilities: str = "drop") -> ConvertReport | None:
        """Make a real tree servable by QEMU as `host_uid`; None when it already is."""
        return None

    def export(self, tree: Path, dest: Path) -> None:
        """`tree` with its real owners and modes, as a new directory or a `.tar` archive."""
        store = self.store(tree)
        if dest.name.endswith(".tar"):
            export_tar(store, dest)
        else:
            export_tree(store, dest)

    def fsdev_options(self) -> list[str]:
        """This model's options for QEMU's `-fsdev local,...`."""
        return [f"security_model={self.name}"]

    def new_share_dir(self, path: Path, host_uid: int, host_gid: int) -> None:
        """Set up a share directory just made, so QEMU (as `host_uid`) can write to it."""
        if not self.qemu_needs_root:
            os.chown(path, host_uid, host_gid)


class _Mapped(SecurityModel):
    mapped = True
    store_class: ClassVar[type[MappedStore]]

    def store(self, root: Path, host_uid: int = -1, host_gid: int = -1) -> MappedStore:
        return self.store_class(root, host_uid, host_gid)

    def convert(self, tree: Path, *, host_uid: int, host_gid: int,
                capabilities: str = "drop") -> ConvertReport:
        return convert_in_place(self.store(tree, host_uid, host_gid), self.name,
                                capabilities=capabilities)

    def new_share_dir(self, path: Path, host_uid: int, host_gid: int) -> None:
        super().new_share_dir(path, host_uid, host_gid)
        # The guest sees a root-owned 0755 directory, as it would on a disk.
        self.store(path, host_uid, host_gid).record("", 0o40755, 0, 0)


class MappedXattr(_Mapped):
    name = "mapped-xattr"
    needs_user_xattrs = True
    libvirt_accessmode = "mapped"
    owner_on_host = OwnerOnHost.XATTRS
    store_class = XattrStore


class MappedFile(_Mapped):
    name = "mapped-file"
    libvirt_accessmode = None
    owner_on_host = OwnerOnHost.METADATA_FILES
    store_class = MappedFileStore


class Passthrough(SecurityModel):
    name = "passthrough"
    qemu_needs_root = True  # the guest's chown is a real chown on the host
    libvirt_accessmode = "passthrough"
    owner_on_host = OwnerOnHost.HOST_OWNER


class NoneModel(SecurityModel):
    name = "none"
    libvirt_accessmode = "squash"
    owner_on_host = OwnerOnHost.NOT_STORED


MODELS: dict[str, SecurityModel] = {
    m.name: m for m in (MappedXattr(), MappedFile(), Passthrough(), NoneModel())}


def security_model(name: str) -> SecurityModel:
    """The model a validated lab names (canonical names only; the lab folds `mapped`)."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown security model {name!r}; "
                         f"expected one of {', '.join(MODELS)}") from None


def model_of(share: Share) -> SecurityModel:
    """The security model of a validated share."""
    return security_model(share.security_model)
