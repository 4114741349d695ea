"""The resolved target, its typed records, the build's plan, and retries chosen by type."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from provision9p.connect.ssh import HostKeyMismatch, NotReady, open_client
from provision9p.errors import UsageError
from provision9p.lab import validate_text
from provision9p.lab.model import LabSpec
from provision9p.rootfs import build, keys
from provision9p.state import BootRecord, BuildRecord
from provision9p.target import Target, resolve, resolve_all

LAB = """\
name: t
guests:
  a:
    rootfs:
      mirror: http://mirror.invalid/debian
  b:
    memory: 512
"""


@pytest.fixture()
def lab(tmp_path: Path) -> LabSpec:
    return validate_text(LAB, str(tmp_path / "lab.yml"), tmp_path)


def test_targets_in_the_order_named_each_once(lab: LabSpec) -> None:
    assert [t.name for t in resolve_all(lab)] == ["a", "b"]
    assert [t.name for t in resolve_all(lab, ["b", "a", "b"])] == ["b", "a"]
    with pytest.raises(UsageError, match="no guest named 'c'"):
        resolve_all(lab, ["a", "c"])


def test_the_target_carries_the_mirror_and_the_paths(lab: LabSpec, tmp_path: Path) -> None:
    a = resolve(lab, lab.guest("a"))
    assert a.mirror == "http://mirror.invalid/debian" == a.guest.rootfs.mirror
    assert a.state.dir == tmp_path / ".provision9p" / "guests" / "a"
    assert a.client_key == tmp_path / ".provision9p" / "ssh" / "id_ed25519"
    assert a.known_hosts == a.state.dir / "known_hosts"
    # The lab's guest itself is left as written.
    assert lab.guest("a").rootfs.mirror == a.mirror and lab.guest("b").rootfs.mirror is None
    assert a.running_pid() is None and a.boot_record() is None and a.build_record() is None
    with pytest.raises(UsageError, match="a is not built yet"):
        a.require_built()
    with pytest.raises(UsageError, match="a is not running"):
        a.require_running()


def test_records_round_trip_and_tolerate_old_or_broken_files(lab: LabSpec) -> None:
    st = resolve(lab, lab.guest("a")).state
    boot = BootRecord(ssh_port=2222, accel="tcg", accel_reason="asked", argv=["qemu", "-m"],
                      run_as="u", qemu_pid=42, started="now")
    st.write_boot(boot)
    assert st.read_boot() == boot
    data = json.loads(st.boot_json.read_text())
    st.boot_json.write_text(json.dumps({**data, "from_a_newer_version": 1}))
    assert st.read_boot() == boot
    del data["ssh_port"]
    st.boot_json.write_text(json.dumps(data))
    assert st.read_boot() is None
    st.build_json.write_text("{not json")
    assert st.read_build() is None
    st.build_json.write_text("[1, 2]")
    assert st.read_build() is None


def _fake_build(target: Target, fingerprint: str) -> None:
    """What a finished build leaves, minus the work: tree, kernel, host key, record."""
    target.guest.root.path.mkdir(parents=True)
    st = target.state
    st.boot_dir.mkdir(parents=True)
    st.kernel.write_bytes(b"kernel")
    st.write_host_key("ssh-ed25519 AAAA a-host")
    st.write_build(BuildRecord(fingerprint=fingerprint, kernel="k", release="r",
                               verdict="builtin", initrd=False, run_as="u", client_key="k"))


def test_the_plan_says_whether_the_tree_is_current(lab: LabSpec, tmp_path: Path) -> None:
    a = resolve(lab, lab.guest("a"))
    plan = build.plan(a)
    assert not plan.current
    assert build.plan(a) == plan  # the same inputs, the same fingerprint
    assert build.plan(a, hook_key="x").fingerprint != plan.fingerprint
    _fake_build(a, plan.fingerprint)
    assert build.plan(a).current
    a.state.kernel.unlink()  # a half-made build is not current
    assert not build.plan(a).current
    # Another build input (a share of the guest) is another fingerprint.
    mirror_line = "      mirror: http://mirror.invalid/debian\n"
    with_share = LAB.replace(mirror_line, mirror_line + "    shares:\n"
                             "      - {path: d, mount_tag: d, mount: /mnt/d}\n")
    other = validate_text(with_share, str(tmp_path / "lab.yml"), tmp_path)
    assert build.plan(resolve(other, other.guest("a"))).fingerprint != plan.fingerprint


@pytest.fixture()
def resetting_server() -> Iterator[tuple[int, list[int]]]:
    """Accepts TCP connections and drops them at once, as slirp does before sshd is up."""
    srv = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1], accepted
    srv.close()


def test_a_dropped_handshake_is_retried_then_not_ready(lab: LabSpec,
                                                       resetting_server: tuple[int, list[int]]
                                                       ) -> None:
    port, accepted = resetting_server
    a = resolve(lab, lab.guest("a"))
    a.state.write_host_key(keys.generate("x").public_line)
    with pytest.raises(NotReady, match=r"cannot SSH into a on 127\.0\.0\.1"):
        open_client(a, port, timeout=2, attempts=2)
    assert len(accepted) == 2


def test_another_host_key_is_refused_without_retry(lab: LabSpec) -> None:
    """A real SSH server answering with a key other than the pinned one."""
    a = resolve(lab, lab.guest("a"))
    a.state.write_host_key(keys.generate("pinned").public_line)
    server_key = paramiko.ECDSAKey.generate()
    srv = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            accepted.append(1)
            t = paramiko.Transport(conn)
            t.add_server_key(server_key)
            with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
                t.start_server(server=paramiko.ServerInterface())
    threading.Thread(target=serve, daemon=True).start()
    try:
        with pytest.raises(HostKeyMismatch, match="not the one made when its tree was built"):
            open_client(a, srv.getsockname()[1], timeout=5, attempts=3)
    finally:
        srv.close()
    assert len(accepted) == 1


def test_a_slow_login_is_waited_for_not_taken_for_a_wrong_key(lab: LabSpec) -> None:
    """A real SSH server that takes longer than the connect timeout to accept the key,
    as a guest under TCG on a loaded host does: the login still succeeds."""
    import io

    a = resolve(lab, lab.guest("a"))
    host = keys.generate("host")
    a.state.write_host_key(host.public_line)
    keys.lab_client_key(a.client_key)
    server_key = paramiko.Ed25519Key.from_private_key(
        io.StringIO(host.private_openssh.decode()))

    class Slow(paramiko.ServerInterface):
        def get_allowed_auths(self, username: str) -> str:
            return "publickey"

        def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
            time.sleep(3)  # longer than the timeout given below
            return paramiko.AUTH_SUCCESSFUL

    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = srv.accept()
            t = paramiko.Transport(conn)
            t.add_server_key(server_key)
            with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
                t.start_server(server=Slow())
                t.join(30)
    threading.Thread(target=serve, daemon=True).start()
    try:
        client = open_client(a, srv.getsockname()[1], timeout=1, attempts=1)
        client.close()
    finally:
        srv.close()
