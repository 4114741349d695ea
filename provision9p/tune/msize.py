"""The msize sweep: remount a share at each size and time three workloads in the guest.

Linux's virtio 9P transport lets one mount use a tag at a time (a second mount of the
same tag fails with EBUSY: trans_virtio.c marks the channel in use), so the share is
unmounted and mounted again at its own mount point with only msize changed, and put
back after every size with the lab's options and the msize it had. That is also why the
root share cannot be swept: it cannot be unmounted, and QEMU 7.2 cannot add a 9P device
to a running guest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from provision9p.connect.base import Connection
from provision9p.errors import TaskError, UsageError
from provision9p.lab.model import VIRTIO_MSIZE_CAP, GuestSpec, Share
from provision9p.tune.recommend import Sample

DEFAULT_SIZES = (8192, 16384, 32768, 65536, 131072, 262144, VIRTIO_MSIZE_CAP)
DEFAULT_FILE_MIB = 64
DEFAULT_FILES = 100

# Run by bash in the guest: $EPOCHREALTIME stamps need no fork. The trap removes the
# scratch directory and mounts the share back with the lab's options, whatever failed.
GUEST_SCRIPT = r"""
set -eu
export LC_ALL=C
tag=$1 mnt=$2 opts=$3 base=$4 mib=$5 files=$6 labmsize=$7
scratch=
# Back as it was: the lab's options with the msize the share had (none shown: the
# kernel's default); a share that was not mounted comes back as the lab says.
if mountpoint -q "$mnt"; then
    was=$(awk -v m="$mnt" '$2 == m && $3 == "9p" { print $4 }' /proc/mounts | tail -n 1 |
          grep -o 'msize=[0-9]*' || true)
else
    was=msize=$labmsize
fi
orig=$base${was:+,$was}
restore() {
    if [ -n "$scratch" ]; then rm -rf "$scratch"; fi
    cd /
    if mountpoint -q "$mnt"; then umount "$mnt"; fi
    if ! mount -t 9p -o "$orig" "$tag" "$mnt"; then
        echo "could not mount $tag back on $mnt" >&2
        exit 1
    fi
}
trap restore EXIT
cd /
if mountpoint -q "$mnt"; then umount "$mnt"; fi
mount -t 9p -o "$opts" "$tag" "$mnt"
awk -v m="$mnt" '$2 == m && $3 == "9p" { print "options=" $4 }' /proc/mounts
echo "kernel=$(uname -r)"
scratch=$(mktemp -d "$mnt/.provision9p-tune.XXXXXX")
echo "t0=$EPOCHREALTIME"
dd if=/dev/zero of="$scratch/seq" bs=1M count="$mib" conv=fsync status=none
echo "t1=$EPOCHREALTIME"
sync
echo 3 > /proc/sys/vm/drop_caches
echo "t2=$EPOCHREALTIME"
dd if="$scratch/seq" of=/dev/null bs=1M status=none
echo "t3=$EPOCHREALTIME"
rm -f "$scratch/seq"
mkdir "$scratch/meta"
echo "t4=$EPOCHREALTIME"
for ((i = 0; i < files; i++)); do : > "$scratch/meta/f$i"; done
ls -l "$scratch/meta" > /dev/null
rm -rf "$scratch/meta"
echo "t5=$EPOCHREALTIME"
"""


@dataclass(frozen=True)
class SweepPlan:
    """What one sweep measures."""

    sizes: tuple[int, ...] = DEFAULT_SIZES
    file_mib: int = DEFAULT_FILE_MIB
    files: int = DEFAULT_FILES
    runs: int = 1


def pick_share(guest: GuestSpec, tag: str | None) -> Share:
    """The share to sweep: the one tagged `tag`, else the guest's first extra share."""
    if tag == guest.root.mount_tag:
        raise UsageError(
            f"{guest.name}: the root share ({tag}) cannot be swept: it cannot be unmounted, "
            "and Linux's virtio transport refuses a second mount of one tag (EBUSY)",
            hint="sweep an extra share on the same host file system and use its result "
                 "for rootfs.msize, or boot with each msize in rootfs.msize")
    if tag is None:
        if not guest.shares:
            raise UsageError(f"{guest.name} has no extra share to measure",
                             hint="add a share to the lab (the root share cannot be "
                                  "remounted while the guest runs)")
        share = guest.shares[0]
    else:
        found = [s for s in guest.shares if s.mount_tag == tag]
        if not found:
            tags = ", ".join(s.mount_tag for s in guest.shares) or "none"
            raise UsageError(f"{guest.name} has no share tagged {tag!r} (extra shares: {tags})")
        share = found[0]
    if share.readonly:
        raise UsageError(f"{guest.name}: share {share.mount_tag} is read-only; the sweep "
                         "writes a file to it", hint="measure a writable share")
    return share


def mount_options(share: Share, msize: int | None) -> str:
    """The share's own mount options with only msize changed (None: left out)."""
    opts = share.options.as_string(readonly=share.readonly).split(",")
    opts = [o for o in opts if not o.startswith("msize=")]
    if msize is not None:
        opts.insert(2, f"msize={msize}")  # where as_string puts it
    return ",".join(opts)


def kernel_default_msize(release: str) -> int:
    """The msize a 9P mount gets when /proc/mounts shows none: the kernel prints it only
    when it differs from its default (128 KiB since Linux 5.15, 8 KiB before)."""
    m = re.match(r"(\d+)\.(\d+)", release)
    version = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    return 131072 if version >= (5, 15) else 8192


def parse_output(text: str, file_mib: int, files: int) -> Sample:
    """A Sample from the guest script's `key=value` lines."""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        t = [float(values[f"t{i}"]) for i in range(6)]
        options = values["options"].split(",")
    except (KeyError, ValueError) as exc:
        raise TaskError(f"the msize sweep printed something unexpected: {text.strip()[-300:]}",
                        hint="run it again with --debug") from exc
    given = [o.split("=", 1)[1] for o in options if o.startswith("msize=")]
    msize = int(given[0]) if given else kernel_default_msize(values.get("kernel", ""))
    size = file_mib * (1 << 20) / 1e6
    return Sample(msize=msize,
                  write_mbs=size / max(t[1] - t[0], 1e-6),
                  read_mbs=size / max(t[3] - t[2], 1e-6),
                  meta_ops=3 * files / max(t[5] - t[4], 1e-6))


def measure(conn: Connection, share: Share, msize: int, plan: SweepPlan) -> Sample:
    """One size, one run: the share is back on its own options afterwards."""
    res = conn.run(["bash", "-c", GUEST_SCRIPT, "provision9p-tune", share.mount_tag,
                    share.mount, mount_options(share, msize), mount_options(share, None),
                    str(plan.file_mib), str(plan.files), str(share.options.msize)])
    if not res.ok:
        hint = "is something using the share? (`fuser -vm` in the guest)" \
            if "busy" in res.stderr else "see the message above"
        raise TaskError(f"measuring msize={msize} on {share.mount_tag} failed: "
                        f"{res.stderr.strip()[-400:]}", hint=hint)
    return parse_output(res.stdout, plan.file_mib, plan.files)


def sweep(conn: Connection, share: Share, plan: SweepPlan,
          progress: Callable[[int, int, Sample], None] | None = None) -> list[Sample]:
    """Every size once per run, runs interleaved so drift in the host's load spreads
    over all sizes instead of favouring one."""
    out: list[Sample] = []
    for run in range(plan.runs):
        for asked in plan.sizes:
            sample = measure(conn, share, asked, plan)
            out.append(sample)
            if progress is not None:
                progress(run, asked, sample)
    return out


def parse_sizes(text: str) -> tuple[int, ...]:
    """`65536,512K` -> (65536, 524288); sizes below 4096 are refused as Linux does."""
    from provision9p.lab.units import parse_size

    sizes = []
    for part in text.split(","):
        try:
            size = parse_size(part.strip())
        except ValueError:
            raise UsageError(f"--sizes: {part.strip()!r} is not a size",
                             hint="give bytes or K/M units: --sizes 65536,512000") from None
        if size < 4096:
            raise UsageError(f"--sizes: {size} is below 4096, the smallest msize Linux takes")
        sizes.append(size)
    return tuple(dict.fromkeys(sizes))


def check_plan(plan: SweepPlan) -> None:
    if plan.file_mib < 1 or plan.files < 1 or plan.runs < 1:
        raise UsageError("--files and --runs must be at least 1 (--file-size at least 1M)")


