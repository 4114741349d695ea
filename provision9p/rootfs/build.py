"""`rootfs build`: from the lab's spec to a root tree QEMU can serve, plus what boots it.

Order: cached debootstrap base -> plain copy -> offline guest setup, kernel modules,
tree-phase roles -> the root share's security model applied into a staging dir ->
renamed into place. Nothing is in place until all of it worked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provision9p import jobs, ui
from provision9p.boot.initramfs import build_initramfs
from provision9p.boot.vmlinux import install_beside
from provision9p.errors import BuildError, HostError
from provision9p.host.doctor import check_user_xattrs
from provision9p.lab.model import GuestSpec
from provision9p.qemu_user import RunAs, check_reachable
from provision9p.rootfs import foreign, keys, overlay, rootless
from provision9p.rootfs.builder import Pin
from provision9p.rootfs.debootstrap import base_key, refuse_foreign, tree_request
from provision9p.rootfs.guest_kernel import (
    GuestKernel,
    initramfs_modules,
    install_modules,
    prepare_kernel,
)
from provision9p.rootfs.guest_setup import SetupInputs, setup_tree
from provision9p.rootfs.safe_fs import clean_stale_staging, staged
from provision9p.rootfs.security import SecurityModel, model_of
from provision9p.state import BuildRecord, GuestState
from provision9p.target import Target

# Bump when what the build writes into a tree changes, so old trees are rebuilt.
BUILD_FORMAT = 7

# Runs on the plain tree before conversion (the roles engine's tree phase plugs in here).
TreeHook = Callable[[Path], None]


@dataclass(frozen=True)
class BuildResult:
    guest: str
    changed: bool
    seconds: float
    stages: dict[str, float]


def busybox_path() -> Path:
    """A static busybox for the initramfs (Debian's busybox-static)."""
    for candidate in (Path("/bin/busybox"), Path("/usr/bin/busybox")):
        if candidate.is_file():
            out = subprocess.run(["file", "-L", str(candidate)], capture_output=True,
                                 text=True).stdout if shutil.which("file") else "static"
            if "dynamically" not in out:
                return candidate
    raise HostError("a static busybox is needed for the initramfs",
                    hint="apt-get install busybox-static (or `provision9p doctor --install`)")


def _needs_initramfs(guest: GuestSpec, kernel: GuestKernel) -> bool:
    return kernel.needs_initramfs or guest.kernel.initramfs == "always"


def _initramfs_busybox(guest: GuestSpec, mirror: str) -> Path:
    """The host's static busybox, or for a foreign guest one of its own arch."""
    if foreign.is_foreign(guest.debian_arch):
        return foreign.guest_busybox(guest.debian_arch, suite=guest.rootfs.suite, mirror=mirror)
    return busybox_path()


@dataclass(frozen=True)
class BuildPlan:
    """What a build would do: its inputs' fingerprint, and whether the tree on disk is it."""

    fingerprint: str
    current: bool


def fingerprint(guest: GuestSpec, mirror: str, run_as: RunAs, hook_key: str = "",
                pins: tuple[Pin, ...] = ()) -> str:
    """What the finished tree depends on: same fingerprint, nothing to rebuild (a lock's
    versions are in the base's key: a changed lock rebuilds)."""
    key, _ = base_key(guest.rootfs, guest.debian_arch, mirror, pins)
    data = {
        "format": BUILD_FORMAT, "base": key, "kernel": repr(guest.kernel),
        "root": repr(guest.root), "shares": repr(guest.shares), "name": guest.name,
        "run_as": [run_as.uid, run_as.gid], "capabilities": guest.rootfs.capabilities,
        "hooks": hook_key, "layout": guest.rootfs.layout,
    }
    if guest.rootfs.image is not None:  # the tree comes from the image, nothing else
        from provision9p.image.guest import image_key

        data.update(base=image_key(guest.rootfs.image), hooks="")
    if guest.address is not None:  # the lab NIC's config is in the tree
        data["lab_net"] = [str(guest.address), guest.mac]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def plan(target: Target, hook_key: str = "") -> BuildPlan:
    """The build's plan; `up` asks it whether a running guest is still what the lab says."""
    # a guest made from an image needs no mirror (a CI host may have none)
    mirror = target.mirror if target.guest.rootfs.image is None else ""
    from provision9p.image.pins import base_pins, locked_kernel

    fp = fingerprint(target.guest, mirror, target.run_as, hook_key,
                     base_pins(target, mirror) if mirror else ())
    st = target.state
    record = target.build_record()
    kernel = locked_kernel(target) if mirror else ""  # a lock's kernel .deb, by file name
    current = (record is not None and record.fingerprint == fp
               and target.guest.root.path.is_dir() and st.kernel.is_file()
               and st.host_key.is_file() and (not record.initrd or st.initrd.is_file())
               and (not kernel or os.path.basename(record.kernel) == kernel))
    return BuildPlan(fp, current)


def check_host_ready(target: Target) -> SecurityModel:
    """Before a tree is made: QEMU's user reaches every path it will serve, and the root's
    file system takes the security model's xattrs. Returns that model."""
    guest = target.guest
    for path in (guest.root.path, *(s.path for s in guest.shares), target.lab.state_dir):
        check_reachable(path, target.run_as)
    model = model_of(guest.root)
    if model.needs_user_xattrs:
        finding = check_user_xattrs(guest.root.path)
        if not finding.ok:
            raise HostError(f"the root tree cannot use {model.name}: {finding.detail}",
                            hint=finding.fix)
    return model


def build_guest(target: Target, *, force: bool = False, tree_hook: TreeHook | None = None,
                hook_key: str = "") -> BuildResult:
    """Build (or keep) the guest's root tree, kernel and initramfs."""
    # A normal user: the same build, in a user namespace; an image unpacks straight into
    # the security model's form, which needs none (image/unpack.py).
    if rootless.needed() and target.guest.rootfs.image is None:
        seen = target.in_user_namespace()  # QEMU's user looked up out here, as the user
        hook = rootless.with_devices(tree_hook)
        return rootless.run(lambda: build_guest(seen, force=force, tree_hook=hook,
                                                hook_key=hook_key))
    start = time.monotonic()
    lab, guest, st = target.lab, target.guest, target.state
    run_as = target.run_as
    mirror = target.mirror if guest.rootfs.image is None else ""
    the_plan = plan(target, hook_key)
    # a killed build's staging copy (~300 MB) goes even when the tree in place is current
    clean_stale_staging(guest.root.path)
    if not force and the_plan.current:
        if overlay.ensure_mounted(guest.root.path):
            ui.info(f"    {guest.name}: mounted its overlay root again")
        return BuildResult(guest.name, False, time.monotonic() - start, {})
    if guest.rootfs.image is not None:  # no debootstrap, no roles' tree phase
        from provision9p.image.guest import build_from_image

        return BuildResult(guest.name, True, build_from_image(target, the_plan.fingerprint), {})
    use_overlay = guest.rootfs.layout == "overlay"
    if use_overlay and rootless.inside():
        raise BuildError("rootfs.layout: overlay needs root (its mount would end with "
                         "the build's user namespace)", hint="use rootfs.layout: copy")
    if use_overlay and model_of(guest.root).name != "mapped-xattr":
        raise BuildError(f"rootfs.layout: overlay works with a mapped-xattr root only, not "
                         f"{guest.root.security_model}",
                         hint="use rootfs.layout: copy, or security_model: mapped-xattr")

    model = check_host_ready(target)
    stages: dict[str, float] = {}

    def timed(name: str, t0: float) -> None:
        stages[name] = round(time.monotonic() - t0, 2)

    refuse_foreign(guest.debian_arch)  # before the kernel download
    from provision9p.image.pins import base_for, kernel_guest

    def kernel_stage() -> tuple[GuestKernel, float]:
        t0 = time.monotonic()
        kernel_spec, kernel_deb = kernel_guest(target, mirror)  # a lock's kernel
        return prepare_kernel(kernel_spec, mirror, deb=kernel_deb), time.monotonic() - t0

    # On an empty cache the kernel's download and extraction (in-process, staged, about
    # 7 s) run beside the base tree's mmdebstrap (a subprocess, about 15 s), on the
    # host's other core. A kernel that cannot boot is refused once both are done.
    kernel_job = jobs.beside(kernel_stage, f"{guest.name}-kernel")
    t0 = time.monotonic()
    try:
        with ui.step(f"{guest.name}: base tree ({guest.rootfs.suite}, {guest.debian_arch})"):
            base = base_for(target, mirror)
            if base.cached:
                ui.info(f"    cached: {base.path}")
    except Exception:
        # the kernel's download or extraction ends whole (or fails) before this error
        # goes up: a failed build leaves nothing half-made in the cache
        kernel_job.exception()
        raise
    base_seconds = time.monotonic() - t0
    kernel, kernel_seconds = kernel_job.result()
    stages["kernel"] = round(kernel_seconds, 2)  # beside the base: the two overlap
    stages["debootstrap"] = round(base_seconds, 2)

    client_key_path, client_pub = keys.lab_client_key(target.client_key)
    host_key = keys.generate(f"{guest.name}-host")
    root_path = guest.root.path
    clean_stale_staging(root_path)
    plain_layers: tuple[Path, ...] = (base.path,)
    converted: tuple[Path, ...] = ()
    if use_overlay:
        t0 = time.monotonic()
        if (mods_layer := overlay.modules_layer(kernel)) is not None:
            plain_layers += (mods_layer,)
        converted = tuple(overlay.converted_base(p, model, run_as.uid, run_as.gid,
                                                 guest.rootfs.capabilities)
                          for p in plain_layers)
        timed("shared layers", t0)
        for d in (overlay.upper_of(root_path), overlay.work_of(root_path)):
            clean_stale_staging(d)
    initrd_tmp = st.boot_dir / f".initrd.img.tmp-{os.getpid()}"
    layers: overlay.Layers | None = None
    try:
        with staged(root_path) as staging, contextlib.ExitStack() as stack:
            t0 = time.monotonic()
            tree = staging
            how = "an overlay of" if use_overlay else "a copy of"
            with ui.step(f"{guest.name}: guest setup on {how} the base tree"):
                if use_overlay:
                    layers = stack.enter_context(
                        overlay.plain_overlay(plain_layers, root_path, staging))
                else:
                    _copy_tree(base.path, tree)
                setup_tree(tree, SetupInputs(guest, client_pub, host_key, lab=lab,
                                             initramfs=_needs_initramfs(guest, kernel)))
                install_modules(kernel, tree, copy=not use_overlay)
                if tree_hook is not None:
                    from provision9p.image.pins import for_roles

                    # a lock pins the roles' apt too
                    with for_roles(tree, tree_request(guest.rootfs, guest.debian_arch,
                                                      mirror, target.pins)):
                        tree_hook(tree)
            timed("setup", t0)
            if _needs_initramfs(guest, kernel):
                t0 = time.monotonic()
                with ui.step(f"{guest.name}: initramfs for {kernel.release}"):
                    mods = initramfs_modules(kernel, tree)
                    st.boot_dir.mkdir(parents=True, exist_ok=True)
                    build_initramfs(initrd_tmp, modules=mods,
                                    busybox=_initramfs_busybox(guest, mirror))
                timed("initramfs", t0)
            stack.close()  # the plain overlay is unmounted; its upper is converted alone
            if model.mapped:
                t0 = time.monotonic()
                with ui.step(f"{guest.name}: {model.name} metadata for QEMU as {run_as.name}"):
                    if layers is not None:
                        overlay.convert_upper(layers, model, run_as.file_uid, run_as.file_gid,
                                              guest.rootfs.capabilities)
                    else:
                        report = model.convert(staging, host_uid=run_as.file_uid,
                                               host_gid=run_as.file_gid,
                                               capabilities=guest.rootfs.capabilities)
                        ui.info(f"    {report}")
                timed("convert", t0)
            # From here the old tree, boot files and pinned host key are replaced one by
            # one; without a build record a run killed in between rebuilds, rather than
            # boot a new tree against the old tree's pinned key.
            st.build_json.unlink(missing_ok=True)
            _install_boot_files(st, kernel, initrd_tmp, guest.arch)
            # the old root goes aside by rename, which a mount point refuses
            overlay.unmount(root_path)
        if layers is not None:
            overlay.install(layers, converted, root_path)
        else:
            overlay.remove(root_path, keep_root=True)  # a former overlay guest's layer
    except BaseException:
        if layers is not None:
            overlay.discard(layers)
        raise
    finally:
        initrd_tmp.unlink(missing_ok=True)
    _prepare_extra_shares(guest, run_as)
    st.write_host_key(host_key.public_line)
    st.write_build(BuildRecord(
        fingerprint=the_plan.fingerprint, kernel=kernel.source, release=kernel.release,
        verdict=kernel.report.verdict, initrd=st.initrd.is_file(), run_as=run_as.name,
        client_key=str(client_key_path), stages=stages,
        built=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    ))
    return BuildResult(guest.name, True, time.monotonic() - start, stages)


def _copy_tree(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    if (src / rootless.BASE_TAR).is_file():  # a normal user's base (rootfs/rootless.py)
        rootless.extract_base(src, dest)
        return
    proc = subprocess.run(["cp", "-a", "--reflink=auto", f"{src}/.", str(dest)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"copying the base tree failed: {proc.stderr.strip()[-500:]}",
                         hint="check free disk space")
    (dest / ".provision9p-base.json").unlink(missing_ok=True)


def _install_boot_files(st: GuestState, kernel: GuestKernel, initrd_tmp: Path,
                        arch: str) -> None:
    st.boot_dir.mkdir(parents=True, exist_ok=True)
    tmp = st.kernel.with_name(".vmlinuz.tmp")
    shutil.copy2(kernel.image, tmp)  # its mtime too: install_beside relies on it
    os.chmod(tmp, 0o644)
    os.replace(tmp, st.kernel)
    install_beside(kernel.image, st.kernel, arch)  # once per kernel, not per boot
    if initrd_tmp.exists():
        os.chmod(initrd_tmp, 0o644)
        os.replace(initrd_tmp, st.initrd)
    else:
        st.initrd.unlink(missing_ok=True)


def _prepare_extra_shares(guest: GuestSpec, run_as: RunAs) -> None:
    """Create missing share directories for QEMU's user; existing data is never touched."""
    for share in guest.shares:
        if share.path.exists():
            continue
        try:
            share.path.mkdir(parents=True)
        except FileExistsError:
            continue  # a directory several guests share, made by another guest's build
        model_of(share).new_share_dir(share.path, run_as.file_uid, run_as.file_gid)
