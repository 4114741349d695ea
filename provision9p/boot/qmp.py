"""A minimal QMP client: enough to ask QEMU to power the guest down or quit."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


class QMPError(Exception):
    pass


class QMP:
    """One QMP session over QEMU's unix socket (capabilities negotiated on open)."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(path))
        except OSError as exc:
            self._sock.close()
            raise QMPError(f"cannot connect to QMP at {path}: {exc}") from exc
        self._file = self._sock.makefile("rb")
        try:
            self._read()  # greeting
            self.execute("qmp_capabilities")
        except QMPError:
            self.close()
            raise

    def _read(self) -> dict[str, Any]:
        while True:
            try:
                line = self._file.readline()
            except OSError as exc:  # a reset: QEMU exited meanwhile (a guest powering off)
                raise QMPError(f"QEMU closed the QMP connection ({exc})") from exc
            if not line:
                raise QMPError("QEMU closed the QMP connection")
            msg: dict[str, Any] = json.loads(line)
            if "event" not in msg:
                return msg

    def execute(self, command: str, **arguments: Any) -> Any:
        req: dict[str, Any] = {"execute": command}
        if arguments:
            req["arguments"] = arguments
        try:
            self._sock.sendall(json.dumps(req).encode() + b"\n")
            reply = self._read()
        except OSError as exc:
            if command == "quit":
                return None
            raise QMPError(f"QEMU closed the QMP connection ({exc})") from exc
        except QMPError:
            if command == "quit":
                return None
            raise
        if "error" in reply:
            raise QMPError(f"{command}: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> QMP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
