"""The non-blocking SSH banner probe, against real local sockets that behave like slirp:
accept and close at once while the guest has no sshd, then a server that speaks late."""

from __future__ import annotations

import socket
import threading
import time

from provision9p.boot.probe import BannerProbe


def _serve(listener: socket.socket, plan: list[bytes | None]) -> None:
    """Per accepted connection: None closes it at once, bytes are sent (after 0.1 s)."""
    for step in plan:
        conn, _ = listener.accept()
        with conn:
            if step is not None:
                time.sleep(0.1)
                conn.sendall(step)
                time.sleep(0.5)


def test_probe_sees_the_banner_only_once_sshd_speaks() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        server = threading.Thread(target=_serve, args=(listener, [None, None, b"HTTP/1.0",
                                                                  b"SSH-2.0-test\r\n"]))
        server.start()
        with BannerProbe(port) as probe:
            end = time.monotonic() + 5
            while time.monotonic() < end:
                if probe.poll():
                    break
                # never blocks the wait loop's beat: the socket it polls is non-blocking
                assert probe.sock is None or not probe.sock.getblocking()
                time.sleep(0.02)
            else:
                raise AssertionError("no banner seen")
            # peeked, not consumed: the login reads the banner from the same connection
            sock = probe.take_socket()
            assert sock is not None and probe.sock is None
            with sock:
                assert sock.getblocking() and sock.recv(64).startswith(b"SSH-2.0-test")
        server.join()


def test_probe_on_a_closed_port_is_false_and_does_not_block() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
    with BannerProbe(port) as probe:
        assert not any(probe.poll() for _ in range(5))


def test_probe_on_a_silent_server_does_not_block() -> None:
    """A listener that completes the handshake (the kernel's backlog) and never speaks: a
    blocking read would wait forever, so the polls must all return, False, at once. The 10 s
    bound only catches a real block; it is no timing claim."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        answers: list[bool] = []

        def polls() -> None:
            with BannerProbe(listener.getsockname()[1]) as probe:
                for _ in range(20):
                    answers.append(probe.poll())
                    time.sleep(0.01)

        worker = threading.Thread(target=polls, daemon=True)
        worker.start()
        worker.join(10)
        assert not worker.is_alive(), "poll() blocked on a server that never speaks"
        assert answers == [False] * 20
