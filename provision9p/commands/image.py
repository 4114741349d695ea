"""`lock [--update]` and `image build|list|rm|diff|verify|unpack|disk|boot`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from provision9p import ui
from provision9p.commands.common import (
    SubParsers,
    add_guests,
    add_lab_option,
    open_lab,
    targets,
)


def register(sub: SubParsers) -> None:
    lk = sub.add_parser("lock", help="write LAB.lock: the exact packages of each built guest")
    add_lab_option(lk)
    lk.add_argument("--update", action="store_true",
                    help="rewrite the lock from the built trees even when one exists")
    lk.set_defaults(func=lock_command)

    p = sub.add_parser("image", help="reproducible guest images: build, verify, diff, "
                                     "unpack, disk, boot, rm")
    isub = p.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    b = isub.add_parser("build", help="a built guest's tree as a deterministic archive")
    add_lab_option(b)
    add_guests(b)
    b.add_argument("--json", action="store_true", help="print the results as JSON")
    b.set_defaults(func=build_command)
    ls = isub.add_parser("list", help="the images in the store")
    ls.add_argument("--json", action="store_true", help="print the list as JSON")
    ls.set_defaults(func=list_command)
    rm = isub.add_parser("rm", help="remove images from the store")
    rm.add_argument("refs", nargs="+", metavar="DIGEST", help="a digest or a unique prefix")
    rm.set_defaults(func=rm_command)
    d = isub.add_parser("diff", help="what differs between two images (path and field)")
    d.add_argument("a", metavar="A", help="a digest (or prefix) or an image file")
    d.add_argument("b", metavar="B", help="a digest (or prefix) or an image file")
    d.set_defaults(func=diff_command)
    v = isub.add_parser("verify", help="check an image's digest and every member's path")
    v.add_argument("ref", metavar="IMAGE", help="a digest (or prefix) or an image file")
    v.set_defaults(func=verify_command)
    u = isub.add_parser("unpack", help="an image as a new tree in a security model's form")
    u.add_argument("ref", metavar="IMAGE", help="a digest (or prefix) or an image file")
    u.add_argument("-o", "--output", type=Path, required=True, help="a new directory")
    u.add_argument("--security-model", default="mapped-xattr",
                   choices=("mapped-xattr", "mapped-file", "passthrough", "none"),
                   help="the form QEMU will serve it in (default mapped-xattr: owners "
                        "and modes in xattrs, files owned by you)")
    u.set_defaults(func=unpack_command)
    dk = isub.add_parser("disk", help="an image as a reproducible ext4 and/or qcow2 disk, "
                                      "kept beside it (needs root)")
    dk.add_argument("ref", metavar="IMAGE", help="a stored image's digest (or prefix)")
    dk.add_argument("--format", dest="formats", action="append", choices=("ext4", "qcow2"),
                    help="ext4 (raw) or qcow2; repeat for both (default: both)")
    dk.add_argument("--size", help="the file system's size, e.g. 2G (default: the tree "
                                   "plus a third and 256 MiB)")
    dk.add_argument("--force", action="store_true", help="make them again")
    dk.add_argument("--json", action="store_true", help="print the results as JSON")
    dk.set_defaults(func=disk_command)
    bt = isub.add_parser("boot", help="boot an image's disk under QEMU and run a command "
                                      "over SSH (a smoke check; the disk is not changed)")
    bt.add_argument("ref", metavar="IMAGE", help="a stored image's digest (or prefix)")
    _boot_options(bt)
    bt.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                    help="what to run (default: uname -r; findmnt /)")
    bt.set_defaults(func=boot_command)


def _boot_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--format", default="ext4", choices=("ext4", "qcow2"),
                   help="which of its disks (default ext4)")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="seconds to wait for SSH (default 900: TCG on a busy host)")
    return p


def boot_argv(args: argparse.Namespace) -> list[str]:
    """The command to run; options given after IMAGE (REMAINDER took them) parsed into
    `args`: `image boot IMAGE --format qcow2 -- uname -r`."""
    rest = list(args.command)
    if "--" in rest:
        cut = rest.index("--")
        opts, command = rest[:cut], rest[cut + 1:]
    elif rest[:1] and rest[0].startswith("-"):
        opts, command = rest, []
    else:
        opts, command = [], rest
    if opts:
        parser = _boot_options(argparse.ArgumentParser(prog="provision9p image boot IMAGE"))
        parser.parse_args(opts, namespace=args)
    return command


def lock_command(args: argparse.Namespace) -> int:
    from provision9p.image import lock
    from provision9p.image.build import tree_store

    lab = open_lab(args)
    path = lock.lock_path(lab)
    if path.exists() and not args.update:
        lock.check(lab, path)
        print(f"{path} matches the lab; nothing to do (--update rewrites it)")
        return 0
    _, chosen = targets(args)
    for t in chosen:
        t.require_built()
    entries = {}
    for t in chosen:
        with ui.step(f"{t.name}: reading the packages of {t.guest.root.path}"):
            entries[t.name] = lock.guest_entry(t, tree_store(t))
    lock.write(path, lab, entries)
    for name, entry in entries.items():
        print(f"{name}: {len(entry['packages'])} packages, kernel "
              f"{entry['kernel'].get('version') or entry['kernel']['release']}, "
              f"Release of {entry['release']['date']}")
    print(f"wrote {path}")
    return 0


def build_command(args: argparse.Namespace) -> int:
    from provision9p.image import lock
    from provision9p.image.build import build_image

    lab, chosen = targets(args)
    path = lock.lock_path(lab)
    the_lock = lock.check(lab, path) if path.exists() else None
    for t in chosen:  # every guest checked before any work or warning
        t.require_built()
        t.require_stopped("an image is read from a tree nothing writes to")
    if the_lock is None:
        ui.warn(f"no {path.name}: these images are not reproducible "
                "(`provision9p lock` pins the packages and the time)")
    results: list[dict[str, Any]] = []
    for t in chosen:
        built = build_image(t, the_lock)
        img = built.image
        results.append({"guest": t.name, "digest": f"sha256:{img.digest}",
                        "path": str(img.archive), "size": img.meta.get("size"),
                        "new": built.new, "seconds": round(built.seconds, 2),
                        "reproducible": built.reproducible})
        if not args.json:
            state = "built" if built.new else "unchanged (already in the store)"
            print(f"{t.name}: sha256:{img.digest} {state} in {built.seconds:.1f} s")
            print(f"    {img.archive}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def list_command(args: argparse.Namespace) -> int:
    from provision9p.image import disk, store

    images = store.all_images()
    if args.json:
        print(json.dumps([{"digest": f"sha256:{i.digest}", "path": str(i.archive), **i.meta,
                           "disks": disk.stored_disks(i.digest)} for i in images], indent=2))
        return 0
    if not images:
        print("no images (build one: `provision9p image build GUEST`)")
    for i in images:
        size = i.meta.get("size")
        shown = f"{size / 2**20:.1f} MiB" if isinstance(size, int) else "?"
        formats = "+".join(["tar", *sorted(disk.stored_disks(i.digest))])
        print(f"{i.short}  {i.meta.get('guest', '?'):<12} {shown:>10}  {formats:<14} "
              f"{i.meta.get('created', '?')}  {i.meta.get('lab', '')}")
    return 0


def rm_command(args: argparse.Namespace) -> int:
    from provision9p.image import store

    for image in [store.find(r) for r in args.refs]:  # every name checked before any goes
        store.remove(image.digest)
        print(f"removed sha256:{image.digest}")
    return 0


def diff_command(args: argparse.Namespace) -> int:
    from provision9p.image import diff, store

    a, b = store.verified(args.a), store.verified(args.b)
    lines = diff.diff(a, b)
    for line in lines:
        print(line)
    if not lines:
        print("no difference")
    return 1 if lines else 0  # as diff(1): a script can test it


def verify_command(args: argparse.Namespace) -> int:
    from provision9p.image import store
    from provision9p.image.archive import Reader

    archive = store.verified(args.ref)
    count = sum(1 for _ in Reader(archive))
    print(f"{archive}: digest and all {count} members good")
    if archive.parent.parent == store.images_dir():
        from provision9p.image.disk import verify_disks

        for path in verify_disks(archive.parent.name):
            print(f"{path}: digest good")
    return 0


def unpack_command(args: argparse.Namespace) -> int:
    from provision9p.image import store
    from provision9p.image.unpack import unpack
    from provision9p.rootfs.security import security_model

    archive = store.verified(args.ref)
    with ui.step(f"unpacking {archive} to {args.output} ({args.security_model})"):
        count = unpack(archive, args.output, security_model(args.security_model),
                       os.getuid(), os.getgid())
    print(f"{args.output}: {count} objects")
    return 0


def disk_command(args: argparse.Namespace) -> int:
    from provision9p.image.disk import build_disks

    formats = sorted(set(args.formats or ["ext4", "qcow2"]))
    made = build_disks(args.ref, formats, args.size, force=args.force)
    if args.json:
        print(json.dumps([{"format": d.format, "path": str(d.path),
                           "sha256": f"sha256:{d.sha256}", "size": d.size} for d in made],
                         indent=2))
        return 0
    for d in made:
        print(f"{d.format}: sha256:{d.sha256} ({d.size / 2**20:.0f} MiB file system)")
        print(f"    {d.path}")
    return 0


def boot_command(args: argparse.Namespace) -> int:
    from provision9p.image.disk_boot import boot_disk

    command = boot_argv(args) or ["sh", "-c", "uname -r; findmnt -n -o SOURCE,FSTYPE /"]
    result = boot_disk(args.ref, args.format, command, timeout=args.timeout)
    print(result.output, end="")
    ui.info(f"SSH answered after {result.seconds_to_ssh:.1f} s; powered off")
    return 1 if result.exit_status else 0
