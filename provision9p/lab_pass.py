"""Keep every running guest's /etc/hosts naming the whole lab, over SSH.

The lab's block is not a build input (adding a guest would otherwise rebuild every
other one), so `up` rewrites it in the running guests once its own guests are up.
"""

from __future__ import annotations

from provision9p.connect.ssh import connect
from provision9p.lab.model import LabSpec
from provision9p.lab.network import with_hosts_block
from provision9p.rootfs.guest_setup import lab_hosts_block
from provision9p.target import Target, resolve_all

HOSTS = "/etc/hosts"


def running_targets(lab: LabSpec) -> list[Target]:
    """The lab's guests whose QEMU runs and whose SSH has answered."""
    out = []
    for t in resolve_all(lab):
        boot = t.boot_record()
        if t.running_pid() is not None and boot is not None and boot.ssh_ready:
            out.append(t)
    return out


def refresh(lab: LabSpec) -> list[str]:
    """Rewrite the lab's block in each running guest where it differs; their names."""
    block = lab_hosts_block(lab)
    if block is None:
        return []
    changed = []
    for target in running_targets(lab):
        conn = connect(target)
        try:
            old = conn.read_file(HOSTS).decode()
            new = with_hosts_block(old, lab.name, block)
            if new != old:
                conn.write_file(HOSTS, new.encode(), mode=0o644)
                changed.append(target.name)
        finally:
            conn.close()
    return changed


def settle(lab: LabSpec, *, booted: set[str], switch_restarted: bool,
           verify: bool) -> tuple[list[str], list[str]]:
    """What `up` does for the lab as a whole once its guests are up: reconnect guests
    that outlived a dead switch, name every guest in every /etc/hosts, and prove that
    shared directories are shared. Returns (notes, failures)."""
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
    changed = refresh(lab)
    if changed:
        notes.append(f"/etc/hosts names the lab's guests again in {', '.join(changed)}")
    failures: list[str] = []
    if verify:
        passed, failures = cross_guest.check(running)
        if passed:
            notes.append(f"{passed} cross-guest share check(s) passed")
    return notes, failures
