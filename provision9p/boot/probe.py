"""Noticing an SSH server behind QEMU's user-network port without blocking.

slirp accepts a TCP connection on the host port before anything listens in the guest,
then closes it when the guest refuses; so "connected" means nothing, only the server's
first bytes (`SSH-`) do. One non-blocking socket is polled with a zero timeout and
remade when slirp closes it, so the wait loop keeps its 50 ms beat for the console's
milestones instead of blocking up to a second in a banner read.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time

# How often a refused (closed by slirp) probe is remade: each try costs slirp a
# connection attempt into the guest, so not on every 50 ms beat.
RECONNECT_SECONDS = 0.1


class BannerProbe:
    """poll() is True once an SSH server's banner is waiting on 127.0.0.1:port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.next_connect = 0.0

    def poll(self) -> bool:
        now = time.monotonic()
        if self.sock is None:
            if now < self.next_connect:
                return False
            self.next_connect = now + RECONNECT_SECONDS
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setblocking(False)
            self.sock.connect_ex(("127.0.0.1", self.port))
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if not readable:
                return False
            # peeked, not read: the bytes stay for whoever reads the banner next
            data = self.sock.recv(4, socket.MSG_PEEK)
        except OSError:
            data = b""
        if data.startswith(b"SSH-"):
            return True
        if data and b"SSH-".startswith(data):
            return False  # the banner's first bytes only
        self.close()
        return False

    def take_socket(self) -> socket.socket | None:
        """The connection that saw the banner (blocking again), for the SSH login: the
        guest's sshd already forked for it. The probe starts afresh afterwards."""
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.setblocking(True)
        return sock

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def __enter__(self) -> BannerProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
