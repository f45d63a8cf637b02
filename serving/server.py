"""Running the app under uvicorn on a socket with TCP_NODELAY.

Measured (design.md): a uvicorn socket without TCP_NODELAY makes every small response wait ~40 ms for
Nagle's algorithm and the client's delayed ACK. So the listening socket is made here with TCP_NODELAY (Linux
passes it on to accepted sockets) and the HTTP protocol sets it again on each connection, which holds on
platforms that do not inherit it. One process: the micro-batcher gathers requests within a process, and
onnxruntime already uses every core; scale out with more processes behind a load balancer.

HTTP parsing is httptools (C), not h11 (pure Python): profiled under batch-1 load, h11 took a third of the
event loop's CPU time.
"""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class NoDelayProtocol(HttpToolsProtocol):
    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket with SO_REUSEADDR and TCP_NODELAY; ``port`` 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def make_server(app, log_level: str = "info", **config) -> uvicorn.Server:  # type: ignore[no-untyped-def]
    """A uvicorn server for ``app`` with the no-delay protocol; ``server.run(sockets=[bind(...)])``."""
    return uvicorn.Server(
        uvicorn.Config(
            app,
            http=NoDelayProtocol,
            lifespan="on",
            log_level=log_level,
            access_log=False,
            timeout_graceful_shutdown=30,
            **config,
        )
    )
