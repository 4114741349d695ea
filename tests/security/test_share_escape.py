"""A guest against its shares' boundary (the 9P guide: a share is a boundary; QEMU runs
unprivileged, mapped-xattr): symlinks to host paths, a host symlink out of the share,
hard links to files outside, device nodes, setuid files, FIFOs and sockets, very long
names and deep paths, renames across shares. Checked from the host: nothing outside the
shares was read (a sentinel's atime), written or created; no host file became a symlink,
a device, a FIFO, a socket or setuid; everything the guest made belongs to QEMU's user.
On the suite's shared guest (tests/shared_guest.py), as root as CI runs."""

from __future__ import annotations

import os
import pwd
import secrets
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from integration.labs import SHARED_GUEST

pytestmark = [pytest.mark.vm, pytest.mark.network]

ATTEMPTS = r"""
cd /mnt/esca
echo '[symlinks]'
ln -s /etc/shadow l-shadow; ln -s ../../outside-secret l-up
ln -s ../../../../../../../outside-secret l-deep
cat l-up l-deep 2>&1
echo '[host symlink]'
cat hostlink 2>&1; ls hostlink-dir/ 2>&1; cat hostlink-dir/outside-secret 2>&1
echo '[hard links]'
ln /etc/passwd h-passwd 2>&1; echo b > /mnt/escb/f; ln /mnt/escb/f h-cross 2>&1
echo '[devices]'
mknod d-null c 1 3 && echo x > d-null; mknod d-sda b 8 0; mknod d-mem c 1 1
head -c 4 d-sda > /dev/null 2>&1; echo devices-made
echo '[setuid]'
cp /bin/sh suid-sh && chmod 6755 suid-sh && stat -c '%a' suid-sh
echo '[fifo and socket]'
mkfifo fifo && echo fifo-made
python3 -c "import socket; s = socket.socket(socket.AF_UNIX); s.bind('/mnt/esca/sock')" \
  && echo socket-made
echo '[long names]'
touch "$(printf 'n%.0s' $(seq 255))" && echo 255-ok
touch "$(printf 'n%.0s' $(seq 256))" 2>&1
d=deep; for i in $(seq 30); do d="$d/$(printf 'd%.0s' $(seq 200))"; done
mkdir -p "$d" 2>&1 && echo deep-made
echo '[rename across shares]'
echo moved > m && mv m /mnt/escb/m && cat /mnt/escb/m
"""


def _snapshot(lab: Path) -> dict[str, tuple[int, int, int]]:
    """Every object under the lab's directory but the running guest's root, its state
    (console log, known_hosts) and the two shares the guest works in: (type and mode,
    size, mtime in ns)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(lab):
        rel = os.path.relpath(dirpath, lab)
        if rel == ".":
            dirnames[:] = [d for d in dirnames
                           if d not in ("guests", ".provision9p", "esc-a", "esc-b")]
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.join(rel, name)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def test_a_guest_cannot_leave_its_shares(shared_lab: Path, p9: Any) -> None:
    lab = shared_lab.parent
    qemu = pwd.getpwnam("provision9p")
    token = secrets.token_hex(16)
    secret = lab / "outside-secret"
    secret.write_text(token + "\n")
    secret.chmod(0o644)  # QEMU's user could read it, were it to get out
    day_ago = time.time() - 3 * 86400  # relatime: a read now would move the atime
    os.utime(secret, (day_ago, day_ago))
    (lab / "esc-a" / "hostlink").symlink_to(secret)
    (lab / "esc-a" / "hostlink-dir").symlink_to(lab)
    before = _snapshot(lab)
    res = p9("-f", str(shared_lab), "ssh", SHARED_GUEST, "--", ATTEMPTS, timeout=300)
    out = res.stdout + res.stderr
    try:
        assert token not in out, f"the guest read a file outside its shares:\n{out}"
        assert os.stat(secret).st_atime == pytest.approx(day_ago, abs=1), "the secret was read"
        assert _snapshot(lab) == before, "something outside the shares changed"
        for word in ("devices-made", "6755", "fifo-made", "socket-made", "255-ok",
                     "deep-made", "moved"):
            assert word in out, out  # each attempt really ran
        assert "File name too long" in out, out
        made = 0
        # by directory descriptors: the deep path is longer than PATH_MAX on the host too
        for dirpath, dirnames, filenames, dirfd in os.fwalk(lab / "esc-a"):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                if path.endswith(("/hostlink", "/hostlink-dir")):
                    continue  # the host's own symlinks
                made += 1
                assert stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode), \
                    f"the guest made a host {stat.filemode(st.st_mode)} {path}"
                assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID), f"setuid on host {path}"
                assert (st.st_uid, st.st_gid) == (qemu.pw_uid, qemu.pw_gid), path
        assert made >= 12, made
        # the guest's own view is kept in the xattrs, not in the host's inode
        mode = int.from_bytes(os.getxattr(lab / "esc-a" / "d-null", "user.virtfs.mode"),
                              "little")
        assert stat.S_ISCHR(mode)
        assert not (lab / "esc-a" / "h-passwd").exists()  # EXDEV in the guest
        assert (lab / "esc-b" / "m").read_text() == "moved\n"
        assert not (lab / "esc-a" / "m").exists()
    finally:
        p9("-f", str(shared_lab), "ssh", SHARED_GUEST, "--",
           "rm -rf /mnt/esca/* /mnt/escb/*", timeout=120)
        secret.unlink()
