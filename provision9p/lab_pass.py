"""Keep every running guest's /etc/hosts naming the whole lab, over SSH.

The lab's block is not a build input (adding a guest would otherwise rebuild every
other one), so `up` rewrites it in the running guests once its own guests are up.
"""

from __future__ import annotations

import concurrent.futures
import re
import time
from collections.abc import Collection

from provision9p.boot.sysinit import after_ssh_timeout
from provision9p.connect.base import Connection
from provision9p.connect.ssh import connect
from provision9p.errors import BootError
from provision9p.lab.model import GuestSpec, LabSpec
from provision9p.lab.network import with_hosts_block
from provision9p.rootfs.guest_setup import lab_hosts_block
from provision9p.target import Target, resolve_all

HOSTS = "/etc/hosts"
#: the kernel's routing tables; an address of the guest's own shows as "/32 host LOCAL"
FIB = "/proc/net/fib_trie"


def running_targets(lab: LabSpec) -> list[Target]:
    """The lab's guests whose QEMU runs and whose SSH has answered."""
    out = []
    for t in resolve_all(lab):
        boot = t.boot_record()
        if t.running_pid() is not None and boot is not None and boot.ssh_ready:
            out.append(t)
    return out


def write_block(conn: Connection, lab: LabSpec) -> bool:
    """The lab's block into one guest's /etc/hosts over an open connection (SFTP: no
    command for the guest to start); whether it changed."""
    block = lab_hosts_block(lab)
    if block is None:
        return False
    old = conn.read_file(HOSTS).decode()
    new = with_hosts_block(old, lab.name, block)
    if new == old:
        return False
    conn.write_file(HOSTS, new.encode(), mode=0o644)
    return True


def address_timeout(boot_seconds: float) -> float:
    """How long `up` waits for the lab address after the roles: at least 60 s, and twice
    the boot's own time to SSH on a host slow enough to need more. On a loaded host the
    rest of the boot stretches with it: a guest that took 3 min 19 s to finish booting
    got its address from networkd more than 60 s after the roles were done."""
    return after_ssh_timeout(boot_seconds)


def wait_for_address(conn: Connection, guest: GuestSpec, timeout: float = 60.0) -> None:
    """Until the guest's lab address is on its NIC. systemd-networkd sets it while the
    boot goes on after SSH answered, so `up` would otherwise return before the other
    guests can reach this one. Polled over SFTP: no command for the guest to start."""
    if guest.address is None:
        return
    local = re.compile(rf"\|-- {re.escape(str(guest.address.ip))}\n\s+/32 host LOCAL")
    deadline = time.monotonic() + timeout
    while not local.search(conn.read_file(FIB).decode(errors="replace")):
        if time.monotonic() > deadline:
            raise BootError(f"{guest.name} has no lab address {guest.address.ip} after "
                            f"{timeout:.0f} s",
                            hint=f"see `journalctl -u systemd-networkd` in the guest "
                                 f"(`provision9p ssh {guest.name}`)")
        time.sleep(0.1)


def refresh(lab: LabSpec, *, done: Collection[str] = ()) -> list[str]:
    """Rewrite the lab's block where it differs, in each running guest but those in `done`
    (their own `up` wrote it on the roles' connection), all at once: each needs a log-in,
    which takes seconds under TCG. The names of those whose block changed."""
    if lab_hosts_block(lab) is None:
        return []
    todo = [t for t in running_targets(lab) if t.name not in done]
    if not todo:
        return []

    def one(target: Target) -> bool:
        conn = connect(target)
        try:
            return write_block(conn, lab)
        finally:
            conn.close()

    with concurrent.futures.ThreadPoolExecutor(len(todo)) as pool:
        changed = list(pool.map(one, todo))
    return [t.name for t, c in zip(todo, changed, strict=True) if c]


def settle(lab: LabSpec, *, booted: set[str], switch_restarted: bool,
           verify: bool, hosts_done: Collection[str] = ()) -> tuple[list[str], list[str]]:
    """What `up` does for the lab as a whole once its guests are up: reconnect guests
    that outlived a dead switch, name every guest in every /etc/hosts (but those in
    `hosts_done`), and prove that shared directories are shared. Returns (notes,
    failures)."""
    from provision9p.boot import switch
    from provision9p.verify import cross_guest

    notes: list[str] = []
    running = running_targets(lab)
    if switch_restarted:
        stale = [t for t in running if t.name not in booted]
        for t in stale:
            switch.reconnect(t)
        if stale:
            notes.append("switch restarted; lab NIC reconnected in "
                         + ", ".join(t.name for t in stale))
    changed = refresh(lab, done=hosts_done)
    if changed:
        notes.append(f"/etc/hosts names the lab's guests again in {', '.join(changed)}")
    failures: list[str] = []
    if verify:
        passed, failures = cross_guest.check(running)
        if passed:
            notes.append(f"{passed} cross-guest share check(s) passed")
    return notes, failures
