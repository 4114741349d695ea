"""The new modules on a booted guest, through `up` and a second `apply`: the download
happens in the guest (through QEMU's user network to a server on the host's loopback),
ports are probed from inside, and the second run changes nothing. A unit of sysinit that
takes 15 s proves that the roles wait for the boot to pass sysinit.target (sshd answers
before it, and systemd-tmpfiles-setup empties /tmp there: the download's file, written to
/tmp, was once gone before it was read back)."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.network]

LAB = """\
name: mods
guests:
  m:
    memory: 1024
    rootfs:
      packages: [acl, python3, python3-apt]  # the suite's one base tree
    roles: [mods]
    vars:
      url: "http://10.0.2.2:{port}"
"""

TASKS = """\
- name: a slow unit of sysinit
  copy:
    dest: /etc/systemd/system/slow-sysinit.service
    content: |
      [Unit]
      DefaultDependencies=no
      Before=sysinit.target
      [Service]
      Type=oneshot
      ExecStart=/bin/sleep 15
      ExecStart=/bin/touch /run/slow-sysinit-done
      [Install]
      WantedBy=sysinit.target
- name: in the boot
  systemd:
    name: slow-sysinit
    enabled: true
- name: zone
  timezone:
    name: Europe/Paris
- name: a config
  copy:
    dest: /etc/mods.conf
    content: "# head\\nPort 22\\nMatch all\\n"
    mode: u=rw,go=r
    validate: grep -q Port %s
    force: false  # the next tasks edit it: only the first run writes it
- name: a line before Match
  lineinfile:
    path: /etc/mods.conf
    line: X11Forwarding no
    insertbefore: ^Match
- name: replace between
  replace:
    path: /etc/mods.conf
    regexp: '^Port 22$'
    replace: Port 222
- name: the boot is past sysinit when the roles begin
  stat:
    path: /run/slow-sysinit-done
  register: slow
  phase: ssh
- name: download in the guest
  get_url:
    url: "{{ url }}/tool.tar.gz"
    dest: /opt/
    checksum: "sha256:{{ url }}/SHA256SUMS"
    mode: "0640"
  phase: ssh
  register: got
- name: unpack it in the guest
  unarchive:
    src: /opt/tool.tar.gz
    dest: /opt
    remote_src: true
  phase: ssh
- name: sshd listens
  wait_for:
    port: 22
    timeout: 30
  phase: ssh
- name: find the tool
  find:
    paths: /opt/tool
    patterns: "*.sh"
  register: found
  phase: ssh
- name: root's entry
  getent:
    database: passwd
    key: root
  phase: ssh
- name: read it back
  slurp:
    src: /opt/tool/run.sh
  register: script
  phase: ssh
- name: everything as expected
  assert:
    that:
      - slow.stat.exists
      - found.matched == 1
      - script.content == "ZWNobyB0b29sCg=="
      - got.dest == "/opt/tool.tar.gz"
  phase: ssh
"""


def _tool() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        d = tarfile.TarInfo("tool")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
        tf.addfile(d)
        data = b"echo tool\n"
        info = tarfile.TarInfo("tool/run.sh")
        info.size, info.mode, info.mtime = len(data), 0o755, 1_700_000_000
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def lab() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("these tests need root (debootstrap), as CI has")
    www = Path(tempfile.mkdtemp(prefix="p9-mods-www-"))
    tool = _tool()
    (www / "tool.tar.gz").write_bytes(tool)
    (www / "SHA256SUMS").write_text(f"{hashlib.sha256(tool).hexdigest()}  tool.tar.gz\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(www), **kw)

        def log_message(self, *a: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    path = Path(tempfile.mkdtemp(prefix="p9-mods-", dir="/var/tmp"))
    path.chmod(0o755)
    (path / "roles/mods/tasks").mkdir(parents=True)
    (path / "roles/mods/tasks/main.yml").write_text(TASKS)
    (path / "lab.yml").write_text(LAB.format(port=httpd.server_address[1]))
    yield path / "lab.yml"
    _cli("-f", str(path / "lab.yml"), "down", "--timeout", "5")
    httpd.shutdown()
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(www, ignore_errors=True)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ,
           "PROVISION9P_HOME": os.environ.get("PROVISION9P_HOME", "/var/lib/p9-modules")}
    return subprocess.run([sys.executable, "-m", "provision9p", *args], capture_output=True,
                          text=True, timeout=1500, env=env)


def test_modules_converge_in_a_booted_guest_and_stay_converged(lab: Path) -> None:
    up = _cli("-f", str(lab), "up", "--no-verify")
    assert up.returncode == 0, up.stdout + up.stderr
    again = _cli("-f", str(lab), "apply")
    assert again.returncode == 0, again.stdout + again.stderr
    assert " changed=0 " in again.stdout and " failed=0 " in again.stdout, again.stdout
    res = _cli("ssh", "--lab", str(lab), "m",
               "readlink /etc/localtime; cat /etc/mods.conf; stat -c %a /etc/mods.conf "
               "/opt/tool.tar.gz; cat /opt/tool/run.sh")
    assert res.stdout.split("\n") == [
        "/usr/share/zoneinfo/Europe/Paris", "# head", "Port 222", "X11Forwarding no",
        "Match all", "644", "640", "echo tool", ""], res.stdout
