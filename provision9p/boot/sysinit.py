"""Waiting, after SSH answered, for the guest's boot to pass sysinit.target.

sshd starts with the first units (rootfs/guest_setup.py, _fast_ssh_unit), so a login
can come before the mounts, udev's coldplug and systemd-tmpfiles-setup, which empties
/tmp. Roles and the user's first command wait for sysinit as they would behind a stock
sshd; the login itself, SFTP and the OpenSSH master are opened meanwhile.
"""

from __future__ import annotations

import time

from provision9p.connect.base import Connection
from provision9p.errors import BootError
from provision9p.rootfs.guest_setup import SYSINIT_MARK, SYSINIT_MARK_UNIT

UNIT_PATH = f"/etc/systemd/system/{SYSINIT_MARK_UNIT}"
# seconds between two polls of the mark: the first, and at most
POLL_FIRST, POLL_LAST = 0.05, 0.25


def after_ssh_timeout(boot_seconds: float) -> float:
    """How long to wait for what the boot does after SSH answered: at least 60 s, and
    twice the boot's own time to SSH on a host slow enough to need more (the rest of the
    boot stretches with it)."""
    return max(60.0, 2.0 * boot_seconds)


def wait_for_sysinit(conn: Connection, guest: str, timeout: float) -> float:
    """Seconds waited until the guest's boot marked sysinit.target reached. Polled over
    SFTP: a command costs ~0.35 s of the guest's CPU under TCG, a stat ~13 ms. Those ms
    are taken from the boot being waited for (sshd has ten times its CPU weight while
    the boot lasts), so the polls thin out: every 50 ms at first, then every 250 ms.
    A guest whose tree has no marking unit (a role removed it) is not waited for."""
    start = time.monotonic()
    if conn.stat(UNIT_PATH) is None:
        return 0.0
    pause = POLL_FIRST
    while conn.stat(SYSINIT_MARK) is None:
        waited = time.monotonic() - start
        if waited > timeout:
            raise BootError(f"{guest}: the boot did not get past sysinit.target in "
                            f"{timeout:.0f} s after SSH answered",
                            hint=f"see `systemctl list-jobs` and `journalctl -b` in the "
                                 f"guest (`provision9p ssh {guest}`)")
        time.sleep(pause)
        pause = min(pause * 1.5, POLL_LAST)
    return time.monotonic() - start
