"""Helpers for engine tests: roles written from text, a lab naming them, and a small
real root tree (static busybox, so commands really run in a chroot)."""

from __future__ import annotations

import io
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from provision9p.connect.tree import TreeConnection
from provision9p.lab import validate_text
from provision9p.lab.model import LabSpec
from provision9p.rootfs.metadata.stores import PlainStore
from provision9p.tasks.engine import Reporter, run_play
from provision9p.tasks.report import Recap


def write_role(base: Path, name: str, files: dict[str, str]) -> Path:
    role = base / "roles" / name
    for rel, text in files.items():
        (role / rel).parent.mkdir(parents=True, exist_ok=True)
        (role / rel).write_text(textwrap.dedent(text))
    (role / "tasks").mkdir(parents=True, exist_ok=True)
    return role


def lab(base: Path, roles: str = "[demo]", guest_extra: str = "", top_extra: str = ""
        ) -> LabSpec:
    text = (f"name: t\nroles_path: [roles]\n{top_extra}guests:\n  g:\n    roles: {roles}\n"
            + textwrap.indent(textwrap.dedent(guest_extra), "    "))
    return validate_text(text, str(base / "lab.yml"), base)


def tree(base: Path) -> TreeConnection:
    """A root tree whose /bin/sh is a static busybox: enough for command and shell."""
    root = base / "tree"
    for d in ("bin", "etc", "srv", "tmp", "root"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n"
                                     "nobody:x:65534:65534::/nonexistent:/bin/false\n")
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("needs busybox (static) for a chroot")
    shutil.copy(busybox, root / "bin/busybox")
    subprocess.run(["chroot", str(root), "/bin/busybox", "--install", "-s", "/bin"],
                   check=True)
    return TreeConnection(root, PlainStore(root), "g")


def play(conn: TreeConnection, spec: LabSpec, **kw: Any) -> tuple[Recap, str]:
    out = io.StringIO()
    recap = run_play(conn, spec.guests[0], spec,
                     reporter=Reporter(out, diff=bool(kw.get("diff"))), **kw)
    return recap, out.getvalue()
