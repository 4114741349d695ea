"""become/become_user on a copy of a real debootstrapped tree: the command really runs
as that user (runuser inside the chroot), with that user's HOME."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from scratch_tree import scratch_tree
from tasks.roleplay import lab, play, write_role

from provision9p.connect.tree import TreeConnection
from provision9p.host.mirror import host_mirror
from provision9p.lab.model import RootfsSpec
from provision9p.rootfs.debootstrap import base_tree
from provision9p.rootfs.metadata.stores import PlainStore

pytestmark = [pytest.mark.network]

# The same package set as test_debian_tree, so both share one cached base tree.
SUITE_PACKAGES = ("acl", "python3", "python3-apt")


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[TreeConnection]:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (debootstrap, chroot), as CI has")
    base = base_tree(RootfsSpec(packages=SUITE_PACKAGES), "amd64", host_mirror()).path
    with scratch_tree(base, tmp_path / "scratch") as root, \
            TreeConnection(root, PlainStore(root), "g") as c:
        yield c


def test_become_user_runs_the_command_as_that_user(tmp_path: Path,
                                                   conn: TreeConnection) -> None:
    write_role(tmp_path, "demo", {"tasks/main.yml": """\
        - block:
            - shell: echo "$(id -un) $HOME $EXTRA"
              register: as_nobody
              environment: {EXTRA: env}
            - command: id -u
              become_user: root
              register: as_root_again
          become: true
          become_user: nobody
        - command: id -un
          become_user: nobody
          register: no_become
        - copy:
            dest: /srv/who
            content: "{{ as_nobody.stdout }}|{{ as_root_again.stdout }}|{{ no_become.stdout }}"
        """})
    recap, out = play(conn, lab(tmp_path))
    assert recap.failed == 0, out
    # become_user without become changes nothing, as in Ansible
    assert conn.read_file("/srv/who") == b"nobody /nonexistent env|0|root"
