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
from provision9p.verify.report import CheckResult, check_name, failures

CHECKS = Path(__file__).with_name("share_checks.py")


def share_facts(share: Share) -> dict[str, Any]:
    o = share.options
    return {"tag": share.mount_tag, "mount": share.mount, "readonly": share.readonly,
            "security_model": share.security_model, "msize": o.msize, "cache": o.cache,
            "version": o.version, "path": str(share.path), "multidevs": share.multidevs}

# testinfra decodes output in the guest's encoding, which it asks for first
_ENCODING_PROBE = "import locale;print(locale.getpreferredencoding())"


class VerifyPlugin:
    """Fixtures for share_checks.py, the pinned SSH client for testinfra, and the report:
    each test's outcome as a CheckResult (pytest's own terminal output is off)."""

    def __init__(self, target: Target, port: int) -> None:
        self.guest, self.port = target.guest, port
        self.base = target.lab.base_dir
        self.uid, self.gid = target.run_as.uid, target.run_as.gid
        self.client = open_client(target, port)
        self.results: dict[str, CheckResult] = {}
        self.extra: list[CheckResult] = []  # collection errors, pytest's own failure
        self._last: tuple[str, Any] | None = None  # the current test's last command

    # -- what the checks need -------------------------------------------------------

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
                    self._record_commands(h.backend)
        for item in session.items:
            self.results[item.nodeid] = self._result_for(item)

    def _record_commands(self, backend: Any) -> None:
        """Keep the last command a check ran: a failure shows it with its output."""
        run = backend.run

        def recorded(command: str, *args: str, **kwargs: Any) -> Any:
            res = run(command, *args, **kwargs)
            # not testinfra's own probe of the guest's encoding (a `python` the guest may
            # lack), which would hide the check's command
            if _ENCODING_PROBE not in command:
                self._last = (backend.get_command(command, *args), res)
            return res

        backend.run = recorded

    def _result_for(self, item: pytest.Item) -> CheckResult:
        callspec = getattr(item, "callspec", None)
        params = dict(callspec.params) if callspec is not None else {}
        share = params.pop("share", None)
        params.pop("_testinfra_host", None)
        name = check_name(getattr(item, "originalname", item.name))
        if params:
            name += " [" + ", ".join(f"{k}={v}" for k, v in params.items()) + "]"
        if share:
            where = share["tag"]
        elif Path(str(item.path)) == CHECKS:
            where = "guest"  # a built-in check of the whole guest
        else:
            where = self._file_name(Path(str(item.path)))
        return CheckResult(self.guest.name, where, name)

    def _file_name(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.base))
        except ValueError:
            return str(path)

    # -- outcomes -----------------------------------------------------------------------

    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        self._last = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        r = self.results.get(report.nodeid)
        if r is None:
            return
        r.seconds += report.duration
        for key, value in report.user_properties:
            if key == "detail":
                r.detail = str(value)
        if report.failed and r.outcome != "failed":
            r.outcome = "failed"
            r.message = _message(report)
            if self._last is not None:
                command, res = self._last
                r.command = command
                r.output = _output(res)
        elif report.skipped and r.outcome == "ok":
            r.outcome = "skipped"
            r.message = _message(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            where = self._file_name(Path(report.nodeid.split("::")[0]))
            self.extra.append(CheckResult(self.guest.name, where, "collect", "failed",
                                          message=str(report.longrepr)))

    def pytest_warning_recorded(self, warning_message: Any, when: str, nodeid: str,
                                location: object) -> None:
        r = self.results.get(nodeid)
        text = str(warning_message.message)
        if r is not None:
            r.warnings.append(text)

    # -- for the callers ------------------------------------------------------------------

    @property
    def checks(self) -> list[CheckResult]:
        return [*self.results.values(), *self.extra]

    @property
    def passed(self) -> int:
        return sum(r.outcome == "ok" for r in self.checks)

    @property
    def failed(self) -> list[str]:
        return [f"{r.guest} {r.share} {r.check}" for r in failures(self.checks)]

    def close(self) -> None:
        self.client.close()


def _message(report: pytest.TestReport) -> str:
    """The assertion's own message (with pytest's explanation), not the traceback."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (file, line, reason)
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    message = str(getattr(crash, "message", None) or longrepr or "")
    # pytest's `+  where x = repr(...)` lines show objects' reprs, noise in a report;
    # the failing command is shown on its own.
    lines = [line for line in message.removeprefix("AssertionError: ").splitlines()
             if not line.lstrip().startswith("+")]
    return "\n".join(lines)


def _output(res: Any) -> str:
    lines = [f"exit status {res.rc}"]
    lines += [f"stdout: {line}" for line in res.stdout.splitlines()]
    lines += [f"stderr: {line}" for line in res.stderr.splitlines()]
    return "\n".join(lines)


def verify_guest(target: Target) -> VerifyPlugin:
    """Run every check for one guest; the plugin holds the outcome, nothing is printed."""
    guest = target.guest
    port = target.ssh_port()
    plugin = VerifyPlugin(target, port)
    ini = target.state.dir / "verify.ini"
    ini.write_text("[pytest]\n")
    args = [
        "-c", str(ini), "--rootdir", "/", "-p", "no:cacheprovider", "-p", "no:terminal",
        "--import-mode=importlib",
        # no capture: pytest's capture swaps the process's fd 2 and sys.stderr, which
        # swallowed what other guests' threads of a parallel `up` printed meanwhile
        "--capture=no",
        "--hosts", f"paramiko://root@127.0.0.1:{port}", str(CHECKS),
        *[str(p) for p in guest.verify],
    ]
    ui.info(f"==> verify {guest.name}: {len(guest.all_shares)} share(s)"
            + (f", {len(guest.verify)} test file(s) of the lab" if guest.verify else ""))
    # Test files are named relative to the lab's directory.
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
    if rc not in (0, 1) and not failures(plugin.checks):
        plugin.extra.append(CheckResult(guest.name, "-", "pytest", "failed",
                                        message=f"pytest exited with status {int(rc)}"))
    return plugin
