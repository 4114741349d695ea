"""The built-in verify checks, one set per 9P share and one for the guest as a whole (no
failed systemd units), run by pytest-testinfra over SSH.

`host` is testinfra's fixture (paramiko backend, pinned host key); `share` and
`host_store` come from provision9p's verify plugin (provision9p/verify/runner.py).
`record_property("detail", ...)` is what the report's line shows after the check's name.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shlex
import warnings
from pathlib import Path
from typing import Any

import pytest

from provision9p.rootfs.safe_fs import mounts_below
from provision9p.rootfs.security import security_model

# The report's short words for where the guest's owner ends up (OwnerOnHost).
_OWNER_WHERE = {"XATTRS": "owner in xattrs", "METADATA_FILES": "owner in .virtfs_metadata",
                "HOST_OWNER": "owner on the host file", "NOT_STORED": "owner not kept"}


def _mount_entry(host: Any, mount: str) -> dict[str, str]:
    for line in host.file("/proc/self/mounts").content_string.splitlines():
        dev, mnt, fstype, opts = line.split()[:4]
        if mnt == mount:
            return {"device": dev, "fstype": fstype, "options": opts}
    return {}


def _options(entry: dict[str, str]) -> dict[str, str]:
    out = {}
    for opt in entry.get("options", "").split(","):
        key, _, value = opt.partition("=")
        out[key] = value
    return out


def test_mounted_as_9p(host: Any, share: dict[str, Any], record_property: Any) -> None:
    entry = _mount_entry(host, share["mount"])
    assert entry, f"nothing is mounted at {share['mount']}"
    assert entry["fstype"] == "9p", f"{share['mount']} is {entry['fstype']}, not 9p"
    assert entry["device"] == share["tag"], f"mounted from {entry['device']}"
    opts = _options(entry)
    assert opts.get("trans") == "virtio", f"transport is {opts.get('trans')}"
    version = share["version"]
    # The kernel shows 9p2000.L as the absence of the .u flag plus 'version' in newer kernels.
    if "version" in opts:
        assert opts["version"] == version, f"version is {opts['version']}"
    else:
        assert version == "9p2000.L" and "noextend" not in opts
    record_property("detail", f"{opts.get('version', version)} msize={opts.get('msize', '?')}")


def test_msize(host: Any, share: dict[str, Any], record_property: Any) -> None:
    opts = _options(_mount_entry(host, share["mount"]))
    assert "msize" in opts, "no msize in the mount options"
    effective = int(opts["msize"])
    record_property("detail", f"{effective} (asked {share['msize']})")
    if effective < share["msize"]:
        warnings.warn(f"{share['tag']}: asked for msize {share['msize']}, the guest kernel "
                      f"uses {effective}", stacklevel=1)
    assert effective >= 4096


def test_readonly_as_asked(host: Any, share: dict[str, Any], record_property: Any) -> None:
    record_property("detail", "ro" if share["readonly"] else "rw")
    probe = f"{share['mount'].rstrip('/')}/.provision9p-ro-{secrets.token_hex(4)}"
    res = host.run(f"touch {probe} && rm -f {probe}")
    if share["readonly"]:
        assert res.rc != 0, f"{share['mount']} is readonly in the lab but accepted a write"
        assert "Read-only" in res.stderr or "read-only" in res.stderr.lower()
    else:
        assert res.rc == 0, f"cannot write to {share['mount']}: {res.stderr.strip()}"


def test_guest_write_reaches_host(host: Any, share: dict[str, Any], host_store: Any,
                                  record_property: Any) -> None:
    if share["readonly"]:
        pytest.skip("readonly share")
    name = f".provision9p-verify-{secrets.token_hex(4)}"
    path = f"{share['mount'].rstrip('/')}/{name}"
    data = secrets.token_hex(16)
    res = host.run(f"printf %s {data} > {path} && chown 4242:4343 {path} && chmod 0640 {path}")
    assert res.rc == 0, res.stderr
    owner = security_model(share["security_model"]).owner_on_host
    record_property("detail", _OWNER_WHERE[owner.name])
    try:
        st = host_store.lstat(name)
        assert host_store.read_bytes(name) == data.encode()
        if owner.kept_apart:  # QEMU wrote the file as its own user, not as the guest's
            real = os.lstat(host_store.path(name))
            assert (real.st_uid, real.st_gid) == (host_store.host_uid, host_store.host_gid), (
                f"the host file is {real.st_uid}:{real.st_gid}, not QEMU's user's")
        if not owner.guest_owner_kept:
            return
        assert (st.uid, st.gid, st.perm) == (4242, 4343, 0o640), (
            f"stored as {st.uid}:{st.gid} {st.perm:o} by {share['security_model']}, "
            f"which keeps the owner {owner.value}")
    finally:
        host.run(f"rm -f {path}")


def test_host_write_seen_in_guest(host: Any, share: dict[str, Any], host_store: Any) -> None:
    name = f".provision9p-verify-{secrets.token_hex(4)}"
    data = secrets.token_hex(16).encode()
    host_store.write_bytes(name, data, 0o644, 0, 0)
    try:
        path = f"{share['mount'].rstrip('/')}/{name}"
        seen = host.file(path)
        assert seen.exists, f"a file made on the host is not seen at {path}"
        assert seen.content == data
    finally:
        host_store.unlink(name)
    if share["cache"] in ("loose", "fscache", "mmap"):
        warnings.warn(f"{share['tag']}: cache={share['cache']} does not revalidate: changes "
                      "the host makes to files the guest has cached may not be seen",
                      stacklevel=1)


#: Entries sampled directly inside each file system of a share (besides its top directory)
INODE_SAMPLE = 20


def _inode_sample(root: str) -> dict[str, int]:
    """Path inside the share -> host device, for the top of every file system mounted in
    the share (and the share's own) and what sits directly in each."""
    real = os.path.realpath(root)
    tops = [real] + [str(m) for m in mounts_below(Path(real)) if str(m) != real]
    sample: dict[str, int] = {}
    for top in tops:
        try:
            dev = os.stat(top).st_dev
            these = {os.path.relpath(top, real): dev}
            with os.scandir(top) as entries:
                for entry in itertools.islice((e for e in entries
                                               if not e.name.startswith(".virtfs_metadata")),
                                              INODE_SAMPLE):
                    if entry.stat(follow_symlinks=False).st_dev == dev:  # not another's top
                        these[os.path.relpath(entry.path, real)] = dev
        except OSError:  # a mount this user may not read (nor may QEMU, running as it)
            continue
        sample.update(these)
    return sample


def test_inode_numbers_apart(host: Any, share: dict[str, Any], record_property: Any) -> None:
    """Files of two host file systems inside one share never share an inode number in the
    guest (QEMU's multidevs=remap; its default passes the numbers through)."""
    sample = _inode_sample(share["path"])
    devices = len(set(sample.values()))
    record_property("detail", f"{devices} file system{'s' if devices != 1 else ''}")
    if devices <= 1:
        return
    mount = share["mount"].rstrip("/")
    devs = {(f"{mount}/{rel}" if rel != "." else mount): dev for rel, dev in sample.items()}
    # one line per path the guest can stat ("number path"); one it cannot is left out
    res = host.run("stat -c '%i %n' -- " + " ".join(shlex.quote(p) for p in devs))
    numbers = {path: number for number, path in
               (line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)}
    assert numbers, f"the guest could not stat any of {len(devs)} paths: {res.stderr}"
    first: dict[str, tuple[str, int]] = {}
    for path, dev in devs.items():
        if path not in numbers:
            continue
        number = numbers[path]
        seen = first.setdefault(number, (path, dev))
        if seen[1] == dev:
            continue
        collision = (f"{seen[0]} and {path}, on two file systems on the host, share inode "
                     f"number {number} in the guest")
        if share["multidevs"] == "warn":  # the lab chose QEMU's pass-through
            warnings.warn(f"{share['tag']}: {collision} (multidevs: warn)", stacklevel=1)
            return
        raise AssertionError(f"{collision}: set `multidevs: remap` on the share")


# -- the guest as a whole ---------------------------------------------------------------

#: A failed unit's likely cause, by what the unit is; the fix goes with it.
_CAUSES = {
    ".swap": "a swap file cannot live on a 9P root (swapon: Invalid argument): give the guest "
             "swap with zram (package zram-tools) instead; README, \"Swap\"",
}


def test_no_failed_units(host: Any, record_property: Any) -> None:
    """A provisioned guest with a failed systemd unit is not healthy, whatever its shares
    say: the unit, its status lines and the likely cause."""
    # one round trip: the boot's end (bounded), then what failed
    listed = host.run("timeout 120 systemctl is-system-running --wait >/dev/null; "
                      "systemctl list-units --failed --no-legend --plain --full")
    units = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    record_property("detail", f"{len(units)} failed")
    if not units:
        return
    lines = []
    for unit in units:
        status = host.run(f"systemctl status --no-pager --lines=5 --full -- {unit}")
        cause = next((c for suffix, c in _CAUSES.items() if unit.endswith(suffix)), "")
        lines.append(f"{unit} failed" + (f"; likely cause: {cause}" if cause else ""))
        lines += [f"  {line}" for line in status.stdout.splitlines()[:12]]
    pytest.fail("\n".join(lines), pytrace=False)
