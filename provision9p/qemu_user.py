"""Who QEMU runs as, decided once so the tree is converted for that same user.

With a mapped security model the host owner of every file in the share is QEMU's
user, so QEMU needs no root: the invoking user when that is not root, otherwise a
dedicated system account that provision9p creates.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

from provision9p.errors import HostError
from provision9p.lab.model import GuestSpec, Share
from provision9p.rootfs.security import model_of

ACCOUNT = "provision9p"


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    name: str
    # Seen from a normal user's build namespace (rootfs/rootless.py), where QEMU's user
    # (the invoking user) is uid 0: files are chowned to file_uid, not uid.
    in_namespace: bool = False

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    @property
    def file_uid(self) -> int:
        """The owner to give QEMU's files, as this process names it."""
        return 0 if self.in_namespace else self.uid

    @property
    def file_gid(self) -> int:
        return 0 if self.in_namespace else self.gid


def qemu_user(guest: GuestSpec | Share, *, create: bool = True) -> RunAs:
    """The account QEMU runs as for `guest` (or a guest with only this root share).

    Pass the guest: one passthrough share anywhere makes QEMU run as root.
    """
    shares = guest.all_shares if isinstance(guest, GuestSpec) else (guest,)
    if any(model_of(s).qemu_needs_root for s in shares):
        return RunAs(0, 0, "root")
    if os.geteuid() != 0:
        pw = pwd.getpwuid(os.geteuid())
        return RunAs(pw.pw_uid, pw.pw_gid, pw.pw_name)
    try:
        pw = pwd.getpwnam(ACCOUNT)
    except KeyError:
        if not create:
            raise HostError(f"the account {ACCOUNT!r} that runs QEMU does not exist",
                            hint="run `provision9p rootfs build` (as root) to create it") from None
        # In the kvm group (where there is one) so QEMU can try KVM; whether KVM really
        # works is found out at boot (boot/accel.py).
        groups = ["--groups", "kvm"] if _group_exists("kvm") else []
        proc = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", *groups,
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", ACCOUNT],
            capture_output=True, text=True,
        )
        if proc.returncode not in (0, 9):  # 9: exists (a concurrent run made it)
            raise HostError(f"cannot create the account {ACCOUNT!r}: {proc.stderr.strip()}",
                            hint="create a system user named provision9p by hand") from None
        pw = pwd.getpwnam(ACCOUNT)
    return RunAs(pw.pw_uid, pw.pw_gid, pw.pw_name)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def check_reachable(path: Path, run_as: RunAs) -> None:
    """Fail early when QEMU's user could not get to `path` (e.g. a lab under /root, 0700)."""
    if run_as.is_root:
        return
    for parent in [path, *path.parents]:
        try:
            st = parent.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == run_as.file_uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == run_as.file_gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            raise HostError(f"QEMU runs as {run_as.name!r}, which cannot enter {parent}",
                            hint=f"keep the lab's files elsewhere (e.g. under /var/lib or "
                                 f"/srv), or `chmod o+x {parent}`")
