"""Guests' root trees as overlays of one converted base (rootfs.layout: overlay).

The base is converted to mapped-xattr once per (base, QEMU's user, capabilities) and
shared read-only as the lower layer; a guest owns only its upper and work dirs beside
its root. The guest's own setup (hostname, keys, modules, tree-phase roles) runs on a
plain overlay of the plain base, so chroots and package installs work as in a copy;
then that upper alone is converted (whiteouts and opaque dirs kept) and put on the
converted base. Same-file-system layers keep inode numbers unique under one st_dev, so
QEMU needs no multidevs=remap.

Only mapped-xattr: mapped-file keeps metadata in per-directory files the two layers
would both hold, and none/passthrough need real owners in the lower layer.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from provision9p import paths, ui
from provision9p.errors import BuildError, HostError
from provision9p.host.mirror import cache_entry_lock
from provision9p.rootfs.convert import convert_in_place
from provision9p.rootfs.guest_kernel import GuestKernel, copy_modules
from provision9p.rootfs.safe_fs import clean_stale_staging, mounts_below, remove_tree, staged
from provision9p.rootfs.security import SecurityModel

# Directory renames are recorded (redirect_dir) so a guest's `mv dir` works; nothing
# refers back to lower inodes (index, metacopy, nfs_export off), because the upper built
# on the plain base is later put on the converted one.
_OPTIONS = "redirect_dir=on,index=off,metacopy=off,nfs_export=off,xino=off"


@dataclass(frozen=True)
class Layers:
    lower: tuple[Path, ...]  # topmost first, as overlayfs's lowerdir lists them
    upper: Path
    work: Path


def upper_of(root: Path) -> Path:
    return root.with_name(f"{root.name}-upper")


def work_of(root: Path) -> Path:
    return root.with_name(f"{root.name}-work")


def record_of(root: Path) -> Path:
    return root.with_name(f"{root.name}-overlay.json")


def is_overlay(root: Path) -> bool:
    return record_of(root).is_file()


def modules_layer(kernel: GuestKernel) -> Path | None:
    """The kernel's modules (~400 MB for Debian's) as a plain layer, made once per kernel.

    It lies below the base, so /usr and /usr/lib keep the base's metadata; each guest's
    own depmod output lands in its upper.
    """
    if kernel.modules_dir is None:
        return None
    digest = hashlib.sha256(str(kernel.modules_dir).encode()).hexdigest()[:12]
    path = paths.cache_home() / "trees" / f"modules-{kernel.release}-{digest}"
    with cache_entry_lock(path, f"the modules layer {path.name}"):
        clean_stale_staging(path)
        mark = _mark_of(path)
        if mark.is_file() and path.is_dir():
            return path
        mark.unlink(missing_ok=True)
        with ui.step(f"a shared layer of {kernel.release}'s modules"), staged(path) as staging:
            copy_modules(kernel, staging)
            # merged dirs take the top layer's metadata; keep these as the base has them
            for d in (staging, staging / "usr", staging / "usr/lib", staging / "usr/lib/modules"):
                os.chmod(d, 0o755)
        mark.write_text(json.dumps({"modules": str(kernel.modules_dir)}) + "\n")
    return path


def converted_base(base: Path, model: SecurityModel, uid: int, gid: int,
                   capabilities: str) -> Path:
    """A layer converted for QEMU as uid:gid, built once and shared by every guest."""
    path = base.with_name(f"{base.name}.{model.name}-{uid}-{gid}-{capabilities}")
    with cache_entry_lock(path, f"the converted layer {path.name}"):
        clean_stale_staging(path)
        mark = _mark_of(path)
        if mark.is_file() and path.is_dir():
            return path
        mark.unlink(missing_ok=True)
        with (ui.step(f"converting {base.name} for QEMU as uid {uid} (once per layer)"),
              staged(path) as staging):
            _run(["cp", "-a", "--reflink=auto", f"{base}/.", str(staging)],
                 "copying the base tree")
            (staging / ".provision9p-base.json").unlink(missing_ok=True)
            report = model.convert(staging, host_uid=uid, host_gid=gid,
                                   capabilities=capabilities)
            ui.info(f"    {report}")
        # beside the tree, not in it: the guest would see a file at its root
        mark.write_text(json.dumps({"base": str(base), "uid": uid, "gid": gid}) + "\n")
    return path


def _mark_of(converted: Path) -> Path:
    return converted.with_name(f"{converted.name}.done")


def mount(layers: Layers, at: Path) -> None:
    lower = ":".join(str(p) for p in layers.lower)
    opts = f"lowerdir={lower},upperdir={layers.upper},workdir={layers.work},{_OPTIONS}"
    _run(["mount", "-t", "overlay", "overlay", "-o", opts, str(at)], f"mounting {at}")


def unmount(at: Path) -> None:
    if is_mounted(at):
        _run(["umount", str(at)], f"unmounting {at}")


def is_mounted(at: Path) -> bool:
    return Path(os.path.realpath(at)) in mounts_below(at)


@contextmanager
def plain_overlay(lower: tuple[Path, ...], root: Path, staging: Path) -> Iterator[Layers]:
    """The plain layers under a fresh upper for `root`, mounted at `staging` for the setup."""
    layers = Layers(lower, _staging_dir(upper_of(root)), _staging_dir(work_of(root)))
    try:
        for d in (layers.upper, layers.work):
            d.mkdir(mode=0o700)
        # the merged root takes the upper root's owner and mode
        st = os.lstat(lower[0])
        os.chown(layers.upper, st.st_uid, st.st_gid)
        os.chmod(layers.upper, stat.S_IMODE(st.st_mode))
        mount(layers, staging)
        try:
            yield layers
        finally:
            # with whatever a chroot step left mounted inside it
            _run(["umount", "-R", str(staging)], f"unmounting {staging}")
    except BaseException:
        discard(layers)
        raise


def _staging_dir(path: Path) -> Path:
    return path.with_name(f".{path.name}.staging-{os.getpid()}")


def convert_upper(layers: Layers, model: SecurityModel, uid: int, gid: int,
                  capabilities: str) -> None:
    """The plain upper in the converted form, whiteouts and opaque dirs kept."""
    if model.name != "mapped-xattr":
        raise BuildError(f"rootfs.layout: overlay works with mapped-xattr only, not "
                         f"{model.name}", hint="use rootfs.layout: copy for this guest")
    report = convert_in_place(model.store(layers.upper, uid, gid), model.name,  # type: ignore[arg-type]
                              capabilities=capabilities, overlay_upper=True)
    ui.info(f"    {report} (the guest's own layer)")


def install(layers: Layers, converted: tuple[Path, ...], root: Path) -> None:
    """Put the converted upper in place as `root`'s layer and mount it on `converted`."""
    unmount(root)
    for staging, final in ((layers.upper, upper_of(root)), (layers.work, work_of(root))):
        remove_tree(final)
        os.rename(staging, final)
    root.mkdir(exist_ok=True)
    rec = record_of(root)
    tmp = rec.with_name(f".{rec.name}.tmp")
    tmp.write_text(json.dumps({"lower": [str(p) for p in converted], "upper": str(upper_of(root)),
                               "work": str(work_of(root))}, indent=2) + "\n")
    os.replace(tmp, rec)
    ensure_mounted(root)


def ensure_mounted(root: Path) -> bool:
    """Mount an overlay root that is not (after a host reboot, say); True when it did."""
    rec = record_of(root)
    if not rec.is_file() or is_mounted(root):
        return False
    data = json.loads(rec.read_text())
    layers = Layers(tuple(Path(p) for p in data["lower"]), Path(data["upper"]),
                    Path(data["work"]))
    if gone := [p for p in layers.lower if not _mark_of(p).is_file()]:
        raise HostError(f"a shared layer under {root} is gone ({gone[0]})",
                        hint="rebuild the guest: provision9p rootfs build GUEST --force")
    root.mkdir(exist_ok=True)
    # a crash can leave overlay's scratch dirs in work; mount wants them gone or its own
    mount(layers, root)
    return True


def remove(root: Path, *, keep_root: bool = False) -> None:
    """Unmount an overlay root and delete the guest's layer (the base stays).

    `keep_root`: `root` is a new copy-layout tree replacing the overlay; leave it.
    """
    if not keep_root:
        unmount(root)
    for path in (record_of(root), upper_of(root), work_of(root)):
        remove_tree(path)
    if not keep_root and root.is_dir() and not any(root.iterdir()):
        root.rmdir()


def discard(layers: Layers) -> None:
    for d in (layers.upper, layers.work):
        remove_tree(d)


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed: {proc.stderr.strip()[-500:]}",
                         hint="overlayfs needs root and a kernel with overlay support; "
                              "rootfs.layout: copy avoids it")
