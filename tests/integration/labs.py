"""A module's lab file, in a directory of its own that QEMU's unprivileged user can reach."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def lab_file(lab_dir: Path, name: str, text: str,
             p9: Callable[..., Any]) -> Iterator[Path]:
    """`<lab_dir>/<name>/lab.yml` holding `text`; its guests are stopped afterwards."""
    path = lab_dir / name / "lab.yml"
    path.parent.mkdir()
    path.parent.chmod(0o755)
    path.write_text(text)
    try:
        yield path
    finally:
        p9("-f", str(path), "down", "--timeout", "5")


SHARED_GUEST = "sg"
#: One guest for the session, booted once, used by every module that only needs a plain
#: booted guest for its assertions (tune, share options, health). Each module that changes
#: it restores what it changed: the lab file's text (tune --apply writes into it), a share's
#: mount, a unit.
SHARED_LAB = f"""\
# the suite's shared guest (tests/integration/conftest.py): modules restore what they change
name: shared
guests:
  {SHARED_GUEST}:
    memory: 1024
    cpus: 2
    # provision9p's own command line has no_timer_check already: the repeat is on purpose,
    # the facts must read a repeated flag as Ansible does (True, not a list)
    kernel: {{cmdline: no_timer_check}}
    rootfs:
      layout: overlay  # a layer over the suite's one base tree: no copy, a quick removal
      packages: [acl, python3, python3-apt]  # Ansible's modules need python3
    shares:
      - path: tune-data     # the swept share
        mount_tag: tdata
        mount: /mnt/tdata
        cache: none
      # QEMU's own share options, booted (tests/integration/test_share_options.py)
      - path: opts-data
        mount_tag: opts
        mount: /mnt/opts
        security_model: mapped-xattr
        fmode: 0640
        dmode: 0750
        writeout: immediate
      # two tmpfs mounted inside each (MULTIDEVS_MOUNTS), their files on one inode number:
      # remap asked, remap by default (a share spanning file systems), QEMU's warn asked
      - {{path: remap-data, mount_tag: remap, mount: /mnt/remap, readonly: true,
          multidevs: remap}}
      - {{path: auto-data, mount_tag: auto, mount: /mnt/auto, readonly: true}}
      - {{path: warn-data, mount_tag: warn, mount: /mnt/warn, readonly: true,
          multidevs: warn}}
      # what a guest tries through its shares (tests/security/test_share_escape.py)
      - {{path: esc-a, mount_tag: esca, mount: /mnt/esca}}
      - {{path: esc-b, mount_tag: escb, mount: /mnt/escb}}
"""

#: Host directories of the shared lab that get a tmpfs mounted on each of `a` and `b`, each
#: holding a file `f`: two file systems whose first files share inode number 2.
MULTIDEVS_MOUNTS = ("remap-data", "auto-data", "warn-data")
