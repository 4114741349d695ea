"""`image build`: a built guest's root tree (after its tree-phase roles) as an image.

The tree is read as the guest sees it, through its security model's store; nothing in it
is changed. SOURCE_DATE_EPOCH comes from the environment, else the lock's Release date;
without a lock the image is built but said not to be reproducible.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision9p import ui
from provision9p.host.mirror import signed_release
from provision9p.image import lock as lockmod
from provision9p.image import store
from provision9p.image.archive import BootFile, write_image
from provision9p.image.errors import ImageError, LockError
from provision9p.image.normalize import Rules
from provision9p.rootfs.metadata.base import MetadataStore
from provision9p.rootfs.security import model_of
from provision9p.target import Target


@dataclass(frozen=True)
class Built:
    image: store.StoredImage
    new: bool
    seconds: float
    reproducible: bool


def tree_store(target: Target) -> MetadataStore:
    """The guest's built root tree as the guest sees it."""
    root = target.guest.root
    st = os.stat(root.path)
    return model_of(root).store(root.path, st.st_uid, st.st_gid)


def source_date_epoch(target: Target, lock: dict[str, Any] | None) -> tuple[int, str]:
    """(SOURCE_DATE_EPOCH, where it came from)."""
    if env := os.environ.get("SOURCE_DATE_EPOCH"):
        if not env.isdigit():
            raise ImageError(f"SOURCE_DATE_EPOCH={env!r} is not a number of seconds",
                             hint="unset it, or set it to an integer")
        return int(env), "SOURCE_DATE_EPOCH"
    if lock is not None:
        return int(lock["guests"][target.name]["release"]["epoch"]), "the lock's Release date"
    release = signed_release(suite=target.guest.rootfs.suite, mirror=target.mirror)
    return lockmod.epoch_of(release.date), "the mirror's current Release date"


def build_image(target: Target, lock: dict[str, Any] | None) -> Built:
    start = time.monotonic()
    target.require_built()
    target.require_stopped("an image is read from a tree nothing writes to")
    tree = tree_store(target)
    if lock is not None:
        drift = lockmod.tree_drift(lock["guests"][target.name], tree)
        if drift:
            shown = "\n".join(f"  {d}" for d in drift[:20])
            more = f"\n  ... and {len(drift) - 20} more" if len(drift) > 20 else ""
            raise LockError(f"{target.name}'s tree does not hold the locked packages:\n"
                            f"{shown}{more}", hint=lockmod.UPDATE_HINT)
    epoch, origin = source_date_epoch(target, lock)
    record = target.build_record()
    assert record is not None  # require_built
    st = target.state
    boot = [BootFile(f"boot/vmlinuz-{record.release}", st.kernel)]
    if record.initrd:
        boot.append(BootFile(f"boot/initrd.img-{record.release}", st.initrd))
    manifest = {"guest": target.name, "arch": target.guest.debian_arch,
                "suite": target.guest.rootfs.suite, "kernel_release": record.release,
                "kernel": boot[0].name, "initrd": boot[1].name if len(boot) > 1 else None,
                "source_date_epoch": epoch}
    store.images_dir().mkdir(parents=True, exist_ok=True)
    tmp = store.images_dir() / f".build-{target.name}-{os.getpid()}.tar.zst"
    tmp.unlink(missing_ok=True)
    try:
        with ui.step(f"{target.name}: image of {target.guest.root.path} "
                     f"(SOURCE_DATE_EPOCH {epoch}, {origin})"):
            digest, size = write_image(tree, tmp, rules=Rules(epoch, _client_keys(target)),
                                       boot=boot,
                                       manifest=manifest)
        source = Path(target.lab.source)
        meta = {"guest": target.name, "size": size,
                "lab": str(source.resolve()) if source.is_file() else target.lab.source,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "locked": lock is not None,
                "kernel_release": record.release, "source_date_epoch": epoch}
        image, new = store.add(tmp, digest, meta)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return Built(image, new, time.monotonic() - start, lock is not None)


def _client_keys(target: Target) -> tuple[str, ...]:
    pub = target.client_key.with_name("id_ed25519.pub")
    return (pub.read_text().strip(),) if pub.is_file() else ()
