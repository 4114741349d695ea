"""The QMP client against a real unix socket that behaves as a QEMU exiting mid-request."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision9p.boot.qmp import QMP, QMPError


@pytest.fixture()
def qemu_that_exits(tmp_path: Path) -> Iterator[Path]:
    """Greets, accepts qmp_capabilities, then resets the connection on the next command
    (QEMU exiting as the guest powers off: the kernel answers the read with ECONNRESET)."""
    path = tmp_path / "qmp.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        f = conn.makefile("rb")
        conn.sendall(json.dumps({"QMP": {"version": {}, "capabilities": []}}).encode() + b"\n")
        f.readline()
        conn.sendall(b'{"return": {}}\n')
        # the command arrives and is left unread: closing then resets the connection
        conn.recv(1, socket.MSG_PEEK)
        f.close()
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path
    thread.join(5)
    server.close()


def test_a_qemu_gone_mid_request_is_a_qmp_error(qemu_that_exits: Path) -> None:
    with QMP(qemu_that_exits) as q, pytest.raises(QMPError, match="closed the QMP"):
        q.execute("system_powerdown")


def test_quit_answered_by_a_reset_is_done(qemu_that_exits: Path) -> None:
    with QMP(qemu_that_exits) as q:
        assert q.execute("quit") is None


def test_no_qemu_is_a_qmp_error(tmp_path: Path) -> None:
    with pytest.raises(QMPError, match="cannot connect"):
        QMP(tmp_path / "none.sock")
