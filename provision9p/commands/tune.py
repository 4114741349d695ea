"""`tune msize [GUEST] [--share TAG] [--apply]`: measure a share at a sweep of msize values."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from provision9p import ui
from provision9p.commands.common import SubParsers, add_lab_option, lab_file, open_lab
from provision9p.errors import UsageError
from provision9p.lab.units import parse_size
from provision9p.target import Target, resolve
from provision9p.tune.msize import DEFAULT_SIZES, SweepPlan, check_plan, parse_sizes


def register(sub: SubParsers) -> None:
    p = sub.add_parser("tune", help="measure and choose mount options on a running guest")
    tsub = p.add_subparsers(dest="tune_command", metavar="WHAT", required=True)
    m = tsub.add_parser("msize", help="sweep a share's msize, recommend the smallest size "
                                      "within 5%% of the best")
    add_lab_option(m)
    m.add_argument("guest", nargs="?", metavar="GUEST",
                   help="a running guest (default: the lab's only guest)")
    m.add_argument("--share", metavar="TAG",
                   help="the share's mount_tag (default: the guest's first extra share)")
    m.add_argument("--sizes", metavar="LIST",
                   help="msize values to try, e.g. 65536,512000 (default: 8K to 512000)")
    m.add_argument("--file-size", metavar="SIZE", default="64M",
                   help="the sequential file's size (default 64M)")
    m.add_argument("--files", type=int, default=100, metavar="N",
                   help="small files created, stat'ed and removed (default 100)")
    m.add_argument("--runs", type=int, default=1, metavar="N",
                   help="sweeps to make; the table shows medians and spread (default 1)")
    m.add_argument("--apply", action="store_true",
                   help="write the recommendation into the lab file (comments kept)")
    m.add_argument("--json", action="store_true", help="the measurements as JSON")
    m.set_defaults(func=msize_command)


def _target(args: argparse.Namespace) -> Target:
    lab = open_lab(args)
    if args.guest is None:
        if len(lab.guests) != 1:
            names = ", ".join(g.name for g in lab.guests)
            raise UsageError("name the guest to measure", hint=f"guests: {names}")
        return resolve(lab, lab.guests[0])
    return resolve(lab, lab.guest(args.guest))


def _plan(args: argparse.Namespace) -> SweepPlan:
    try:
        size = parse_size(args.file_size, "M")
    except ValueError:
        raise UsageError(f"--file-size: {args.file_size!r} is not a size",
                         hint="e.g. --file-size 16M") from None
    plan = SweepPlan(sizes=parse_sizes(args.sizes) if args.sizes else DEFAULT_SIZES,
                     file_mib=size >> 20,
                     files=args.files, runs=args.runs)
    check_plan(plan)
    return plan


def msize_command(args: argparse.Namespace) -> int:
    from provision9p.connect.ssh import connect
    from provision9p.tune import chart
    from provision9p.tune.msize import pick_share, sweep
    from provision9p.tune.recommend import Sample, recommend, rows_of

    plan = _plan(args)
    target = _target(args)
    share = pick_share(target.guest, args.share)
    path = lab_file(args) if args.apply else None
    if args.apply and path is None:
        raise UsageError("--apply needs a lab file; this is the built-in default lab",
                         hint="copy it (provision9p/lab/default.yml) to lab.yml and use -f")
    target.require_running()

    def progress(run: int, asked: int, s: Sample) -> None:
        ui.info(f"run {run + 1}/{plan.runs} msize {asked} (effective {s.msize}): "
                f"write {s.write_mbs:.1f} MB/s, read {s.read_mbs:.1f} MB/s, "
                f"metadata {s.meta_ops:.0f} ops/s")

    ui.info(f"{target.name}: sweeping {share.mount_tag} on {share.mount} "
            f"({plan.file_mib} MiB file, {plan.files} small files, {plan.runs} run(s))")
    conn = connect(target)
    try:
        samples = sweep(conn, share, plan, progress)
    finally:
        conn.close()
    rows = rows_of(samples)
    chosen = recommend(rows)
    if args.json:
        print(json.dumps({"guest": target.name, "share": share.mount_tag,
                          "file_mib": plan.file_mib, "files": plan.files,
                          "recommended": chosen,
                          "samples": [vars(s) for s in samples]}, indent=2))
    else:
        print(chart.table(rows, chosen))
        print()
        print(chart.charts(rows))
        print()
        print(f"recommended msize for {share.mount_tag}: {chosen} (the smallest within 5% "
              f"of the best; lab now: {share.options.msize})")
    if path is not None:
        _apply(path, target, share.mount_tag, chosen)
    return 0


def _apply(path: Path, target: Target, tag: str, msize: int) -> None:
    from provision9p.lab.validate import validate_text
    from provision9p.tune.labedit import set_scalar, share_index, write_atomic

    text = path.read_text()
    index = share_index(text, target.name, tag)
    if index is None:
        raise UsageError(f"share {tag} of {target.name} is not in the guest's own `shares:` "
                         f"list in {path} (from defaults?)",
                         hint=f"set `msize: {msize}` on it by hand")
    new = set_scalar(text, ("guests", target.name, "shares", index, "msize"), msize)
    # The edited lab must still load and say what we meant, before it replaces the file.
    lab = validate_text(new, str(path), path.resolve().parent)
    got = [s for s in lab.guest(target.name).shares if s.mount_tag == tag]
    if not got or got[0].options.msize != msize:
        raise UsageError(f"the edited lab would not set msize {msize} on {tag}",
                         hint=f"set `msize: {msize}` by hand")
    if new == text:
        ui.info(f"{path}: msize of {tag} is already {msize}")
        return
    write_atomic(path, new)
    print(f"{path}: msize of {tag} set to {msize} (`provision9p up {target.name}` applies it)")
