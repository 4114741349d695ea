"""ansible-playbook against a running lab guest: shared by the compatibility test and the
roles benchmark. OpenSSH with the lab's key and the guest's pinned host key, pipelining
on, one multiplexed connection kept between runs (as a tuned Ansible setup has it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from provision9p.lab import load_lab
from provision9p.target import resolve


def ansible_playbook(lab_path: Path, guest: str, role: str, *extra: str,
                     roles_path: Path | None = None, gather_facts: bool = False,
                     env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `role` on `guest`; facts only when asked (the roles benchmark runs without)."""
    lab = load_lab(lab_path)
    target = resolve(lab, lab.guest(guest))
    st, port = target.state, target.ssh_port()
    work = lab_path.parent / f"ansible-{guest}"
    work.mkdir(exist_ok=True)
    known = work / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {st.host_key.read_text().strip()}\n")
    (work / "inventory.ini").write_text(
        f"{guest} ansible_host=127.0.0.1 ansible_port={port} ansible_user=root "
        f"ansible_ssh_private_key_file={target.client_key} "
        "ansible_python_interpreter=/usr/bin/python3\n")
    (work / "site.yml").write_text(
        f"- hosts: all\n  gather_facts: {str(gather_facts).lower()}\n"
        f"  roles:\n    - {role}\n")
    (work / "ansible.cfg").write_text(
        "[defaults]\n"
        f"roles_path = {roles_path or lab_path.parent / 'roles'}\n"
        "host_key_checking = True\n"
        "[ssh_connection]\n"
        "pipelining = True\n"
        f"control_path_dir = {work / 'cp'}\n"
        f"ssh_args = -o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes "
        "-o ControlMaster=auto -o ControlPersist=60s\n")
    run_env = {**os.environ, "ANSIBLE_CONFIG": str(work / "ansible.cfg"),
           "ANSIBLE_HOME": str(work / "home"), "ANSIBLE_NOCOLOR": "1",
           "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", **(env or {})}
    playbook = Path(sys.executable).with_name("ansible-playbook")
    return subprocess.run([str(playbook), "-i", str(work / "inventory.ini"),
                           str(work / "site.yml"), *extra],
                          capture_output=True, text=True, env=run_env, timeout=1800)


def recap(output: str, guest: str) -> dict[str, int]:
    """ok/changed/failed/... from a PLAY RECAP line (Ansible's and provision9p's)."""
    m = re.search(rf"^{guest}\s*:\s*(.*)$", output, re.M)
    if not m:
        raise AssertionError(f"no recap for {guest} in:\n{output}")
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}
