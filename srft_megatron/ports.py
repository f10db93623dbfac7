"""A free TCP port on the loopback interface: one helper for every local rendezvous and server.

Used for the MASTER_PORT of single-process and locally spawned process groups, and for the
vLLM servers and stubs started on this machine. The port is free when asked; a server that
loses the race to another process fails at bind time and says so."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
