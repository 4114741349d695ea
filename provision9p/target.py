"""One guest as every stage sees it, resolved once per command and handed down.

Before this, each stage worked the same facts out again (state paths, QEMU's user, the
mirror, the SSH port out of boot.json, the client key's path); with several guests
booting at once that drifts. A command resolves its targets first; the stages take a
Target and never look these things up themselves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from provision9p.errors import ConnectError, MirrorError, UsageError
from provision9p.host.mirror import host_mirror
from provision9p.lab.model import GuestSpec, LabSpec
from provision9p.qemu_user import RunAs, qemu_user
from provision9p.state import BootRecord, BuildRecord, GuestState

if TYPE_CHECKING:
    from provision9p.rootfs.builder import Pin


@dataclass(frozen=True)
class Target:
    """A guest of a lab with everything the stages need to know about it.

    `guest` is the lab's guest with its mirror filled in (rootfs.mirror), so code that
    takes a GuestSpec sees the same mirror the build used.
    """

    lab: LabSpec
    guest: GuestSpec
    state: GuestState
    client_key: Path
    # Build commands may create QEMU's account; the others only look it up.
    create_account: bool = False
    mirror_error: MirrorError | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.guest.name

    @property
    def address(self) -> str | None:
        """The guest's address on the lab network (no prefix), None when the lab has none."""
        return str(self.guest.address.ip) if self.guest.address is not None else None

    @property
    def known_hosts(self) -> Path:
        return self.state.known_hosts

    @property
    def mirror(self) -> str:
        """The Debian mirror: the lab's rootfs.mirror, else the host's apt sources."""
        if self.guest.rootfs.mirror is None:
            # Resolution failed earlier; only commands that need a mirror say so.
            raise self.mirror_error or MirrorError("no mirror")
        return self.guest.rootfs.mirror

    @cached_property
    def run_as(self) -> RunAs:
        """QEMU's user; looked up once per target (and created only by a build)."""
        return qemu_user(self.guest, create=self.create_account)

    @cached_property
    def pins(self) -> tuple[Pin, ...]:
        """The versions LAB.lock holds for this guest's build; () without a lock."""
        from provision9p.image.pins import for_guest

        return for_guest(self.lab, self.guest)

    def in_user_namespace(self) -> Target:
        """This target for a normal user's build namespace (rootfs/rootless.py), where
        QEMU's user is uid 0; its real ids stay in run_as for the build's fingerprint."""
        seen = dataclasses.replace(self)
        seen.__dict__["run_as"] = dataclasses.replace(self.run_as, in_namespace=True)
        return seen

    def running_pid(self) -> int | None:
        return self.state.running_pid()

    def build_record(self) -> BuildRecord | None:
        return self.state.read_build()

    def boot_record(self) -> BootRecord | None:
        return self.state.read_boot()

    def ssh_port(self) -> int:
        """The forwarded SSH port of the running guest, from its boot record."""
        boot = self.boot_record()
        if boot is None or not boot.ssh_port:
            raise ConnectError(f"no SSH port recorded for {self.name} in {self.state.boot_json}",
                               hint="restart it: `provision9p down && provision9p up`")
        return boot.ssh_port

    def require_running(self) -> int:
        """QEMU's pid; a stopped guest is a usage error (exit 2)."""
        pid = self.running_pid()
        if pid is None:
            raise UsageError(f"{self.name} is not running",
                             hint=f"start it: `provision9p up {self.name}`")
        return pid

    def require_stopped(self, what: str) -> None:
        if self.running_pid() is not None:
            raise UsageError(f"{self.name} is running; {what}",
                             hint=f"stop it first: `provision9p down {self.name}`")

    def require_built(self) -> None:
        if self.build_record() is None or not self.guest.root.path.is_dir():
            raise UsageError(f"{self.name} is not built yet",
                             hint=f"build it: `provision9p rootfs build {self.name}` "
                                  f"(or `provision9p up {self.name}`)")


def resolve(lab: LabSpec, guest: GuestSpec, *, create_account: bool = False) -> Target:
    """The target for one guest; the mirror is looked up here, once."""
    error: MirrorError | None = None
    if guest.rootfs.mirror is None:
        try:
            mirror = host_mirror()
        except MirrorError as exc:
            error = exc
        else:
            guest = dataclasses.replace(guest,
                                        rootfs=dataclasses.replace(guest.rootfs, mirror=mirror))
    return Target(lab=lab, guest=guest, state=GuestState.of(lab, guest),
                  client_key=lab.state_dir / "ssh" / "id_ed25519",
                  create_account=create_account, mirror_error=error)


def resolve_all(lab: LabSpec, names: Sequence[str] = (), *,
                create_account: bool = False) -> list[Target]:
    """Targets for the named guests (in the order named, each once), or all of the lab's."""
    guests = [lab.guest(n) for n in dict.fromkeys(names)] if names else list(lab.guests)
    return [resolve(lab, g, create_account=create_account) for g in guests]
