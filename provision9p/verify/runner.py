"""`verify`: run the built-in share checks and the user's testinfra files against a guest.

pytest runs in-process with testinfra's paramiko backend; provision9p's plugin
parametrizes the checks over the guest's shares and swaps testinfra's SSH client for
one that pins the guest's host key (testinfra's own accepts any key).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from provision9p import ui
from provision9p.connect.ssh import open_client
from provision9p.lab.model import Share
from provision9p.rootfs.metadata import open_store
from provision9p.target import Target

CHECKS = Path(__file__).with_name("share_checks.py")


def share_facts(share: Share) -> dict[str, Any]:
    o = share.options
    return {"tag": share.mount_tag, "mount": share.mount, "readonly": share.readonly,
            "security_model": share.security_model, "msize": o.msize, "cache": o.cache,
            "version": o.version, "path": str(share.path)}


class VerifyPlugin:
    """Fixtures for share_checks.py and the pinned SSH client for testinfra."""

    def __init__(self, target: Target, port: int) -> None:
        self.guest, self.port = target.guest, port
        self.uid, self.gid = target.run_as.uid, target.run_as.gid
        self.client = open_client(target, port)
        self.failed: list[str] = []
        self.passed = 0

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "share" in metafunc.fixturenames:
            shares = self.guest.all_shares
            metafunc.parametrize("share", [share_facts(s) for s in shares],
                                 ids=[f"{self.guest.name}:{s.mount_tag}" for s in shares])

    @pytest.fixture
    def host_store(self, share: dict[str, Any]) -> Any:
        return open_store(share["security_model"], Path(share["path"]), self.uid, self.gid)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        import testinfra.host

        for hosts in testinfra.host.Host._hosts_cache.values():
            for h in hosts if isinstance(hosts, list) else [hosts]:
                if getattr(h.backend, "NAME", "") == "paramiko":
                    h.backend.client = self.client

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.passed:
            self.passed += 1
        elif report.failed:
            self.failed.append(report.nodeid)

    def close(self) -> None:
        self.client.close()


def verify_guest(target: Target, *, verbose: bool = True) -> VerifyPlugin:
    """Run every check for one guest; the plugin holds the outcome."""
    guest = target.guest
    port = target.ssh_port()
    plugin = VerifyPlugin(target, port)
    ini = target.state.dir / "verify.ini"
    ini.write_text("[pytest]\n")
    args = [
        "-c", str(ini), "--rootdir", "/", "-p", "no:cacheprovider",
        "--import-mode=importlib", "--no-header", "-o", "console_output_style=classic",
        "--tb=short", "-rfEw", "--hosts", f"paramiko://root@127.0.0.1:{port}",
        "-v" if verbose else "-q", str(CHECKS),
        *[str(p) for p in guest.verify],
    ]
    ui.info(f"==> verify {guest.name}: {len(guest.all_shares)} share(s)"
            + (f", {len(guest.verify)} test file(s) of the lab" if guest.verify else ""))
    # pytest and testinfra print to stdout: the report is the command's result.
    # Test ids are shown relative to the working directory: the lab's own files by name.
    # (rootdir is / because pytest names a file outside its rootdir by a directory.)
    cwd = os.getcwd()
    os.chdir(target.lab.base_dir)
    try:
        rc = pytest.main(args, plugins=[plugin])
    finally:
        os.chdir(cwd)
        plugin.close()
        import testinfra.host

        testinfra.host.Host._hosts_cache.clear()
    if rc not in (0, 1) and not plugin.failed:
        plugin.failed.append(f"pytest exited with status {int(rc)}")
    return plugin
