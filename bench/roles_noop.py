"""A no-change run of a 20-task role on a booted guest: provision9p vs ansible-playbook.

    .venv/bin/python bench/roles_noop.py [--runs N] [--out bench/results/roles-noop.md]

Boots one guest (python3 in its tree, for Ansible), lets `up` apply the role, checks
that ansible-playbook agrees nothing is left to change, then times whole commands in
turn, A B A B ...: `provision9p apply` (a fresh process: load, SSH connect, 20 tasks)
and `ansible-playbook` (pipelining on, an OpenSSH master connection kept between runs);
both gather facts, as a play does by default. Ratios are taken pair by pair; the cost of
provision9p's fact gathering alone (one command over SSH) is timed too. Run as root.
Not a test: numbers depend on the machine; the ratio is what to compare. Goal:
provision9p >= 40x faster.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from integration.ansible_run import ansible_playbook, recap  # noqa: E402

LAB = """\
name: bench-roles
guests:
  b:
    memory: 1024
    cpus: 2
    rootfs:
      packages: [python3, python3-apt]
    roles: [noop20]
"""

# 20 tasks of the kinds roles are made of; every one finds its state already there.
TASKS = """\
- {name: group, group: {name: app, gid: 2100}}
- {name: user, user: {name: app, uid: 2100, group: app, shell: /bin/bash}}
- {name: base dir, file: {path: /srv/app, state: directory, owner: app, group: app, mode: "0755"}}
- {name: conf dir, file: {path: /srv/app/conf, state: directory, mode: "0750"}}
- {name: log dir, file: {path: /srv/app/log, state: directory, owner: app, mode: "0750"}}
- {name: main config, template: {src: app.conf.j2, dest: /srv/app/conf/app.conf, mode: "0640"}}
- {name: env file, template: {src: env.j2, dest: /srv/app/conf/env, mode: "0600"}}
- {name: readme, copy: {content: "managed\\n", dest: /srv/app/README, mode: "0644"}}
- {name: motd, copy: {content: "lab guest\\n", dest: /etc/motd, mode: "0644"}}
- {name: version, copy: {content: "1.0\\n", dest: /srv/app/VERSION, owner: app, mode: "0644"}}
- {name: banner, copy: {content: "hi\\n", dest: /srv/app/banner, mode: "0644"}}
- name: settings
  lineinfile: {path: /srv/app/conf/settings, line: "{{ item }}", create: true, mode: "0644"}
  loop: [a=1, b=2, c=3]
- {name: limits, lineinfile: {path: /etc/security/limits.conf, line: "app soft nofile 4096"}}
- name: sysctl
  lineinfile: {path: /etc/sysctl.d/60-app.conf, line: vm.swappiness=10, create: true, mode: "0644"}
- {name: hosts, lineinfile: {path: /etc/hosts, line: "10.0.2.2 gateway"}}
- {name: block, blockinfile: {path: /srv/app/conf/settings, block: "[extra]\\nx=1"}}
- {name: link, file: {src: /srv/app/conf/app.conf, dest: /etc/app.conf, state: link}}
- {name: look, stat: {path: /srv/app/conf/app.conf}, register: conf}
- {name: ssh, service: {name: ssh, enabled: true, state: started}}
- {name: packages, apt: {name: [openssh-server, python3], state: present}}
"""


def write_lab(base: Path) -> Path:
    role = base / "roles" / "noop20"
    (role / "tasks").mkdir(parents=True)
    (role / "templates").mkdir()
    (role / "tasks" / "main.yml").write_text(TASKS)
    (role / "templates" / "app.conf.j2").write_text(
        "[app]\n{% for k in ['a', 'b', 'c'] %}\n{{ k }} = {{ loop.index }}\n{% endfor %}\n")
    (role / "templates" / "env.j2").write_text("HOST={{ inventory_hostname }}\n")
    lab = base / "lab.yml"
    lab.write_text(LAB)
    return lab


def facts_cost(lab: Path, n: int = 7) -> list[float]:
    """Milliseconds per gather_facts over one open SSH connection."""
    from provision9p.connect.ssh import connect
    from provision9p.lab import load_lab
    from provision9p.target import resolve
    from provision9p.tasks.facts import gather_facts

    spec = load_lab(lab)
    target = resolve(spec, spec.guest("b"))
    conn = connect(target)
    try:
        out = []
        for _ in range(n):
            start = time.monotonic()
            gather_facts(conn, target.guest)
            out.append((time.monotonic() - start) * 1000)
        return out
    finally:
        conn.close()


def timed(argv: list[str], **kw: object) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed:\n{proc.stdout}\n{proc.stderr}")
    return time.monotonic() - start, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path)
    opts = ap.parse_args()
    p9 = [sys.executable, "-m", "provision9p"]
    base = Path(tempfile.mkdtemp(prefix="p9-bench-roles-", dir="/var/tmp"))
    base.chmod(0o755)
    lab = write_lab(base)
    try:
        subprocess.run([*p9, "-f", str(lab), "up", "--no-verify"], check=True)
        warm = ansible_playbook(lab, "b", "noop20", gather_facts=True)
        counts = recap(warm.stdout, "b")
        if warm.returncode != 0 or counts["changed"] or counts["failed"]:
            raise SystemExit(f"ansible-playbook does not agree the guest is converged:\n"
                             f"{warm.stdout}\n{warm.stderr}")
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(opts.runs):
            t, out = timed([*p9, "-f", str(lab), "apply"])
            assert recap(out, "b")["changed"] == 0, out
            ours.append(t)
            start = time.monotonic()
            res = ansible_playbook(lab, "b", "noop20", gather_facts=True)
            theirs.append(time.monotonic() - start)
            assert res.returncode == 0 and recap(res.stdout, "b")["changed"] == 0, res.stdout
        facts_ms = facts_cost(lab)
        ratios = [b / a for a, b in zip(ours, theirs, strict=True)]
        lines = [
            f"# No-change run of a 20-task role ({time.strftime('%Y-%m-%d')}, "
            f"{platform.node()}, {opts.runs} pairs, guest under TCG)",
            "",
            "| command | min s | median s | max s |",
            "|---|---|---|---|",
            f"| provision9p apply | {min(ours):.2f} | {statistics.median(ours):.2f} | "
            f"{max(ours):.2f} |",
            f"| ansible-playbook (pipelining) | {min(theirs):.2f} | "
            f"{statistics.median(theirs):.2f} | {max(theirs):.2f} |",
            "",
            f"ratio ansible/provision9p, pair by pair: median {statistics.median(ratios):.1f}x "
            f"(min {min(ratios):.1f}x, max {max(ratios):.1f}x); goal >= 40x",
            "",
            f"provision9p's fact gathering alone (one command over SSH, in that apply): "
            f"median {statistics.median(facts_ms):.0f} ms (min {min(facts_ms):.0f}, "
            f"max {max(facts_ms):.0f}) over {len(facts_ms)} gathers",
        ]
        text = "\n".join(lines) + "\n"
        print(text)
        if opts.out:
            opts.out.write_text(text)
    finally:
        subprocess.run([*p9, "-f", str(lab), "down"], check=False)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
