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

import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class NoDelayProtocol(HttpToolsProtocol):
    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket with SO_REUSEADDR and TCP_NODELAY; ``port`` 0 picks a free one.

    ``reuse_port``: SO_REUSEPORT, so that several server processes listen on one port and the kernel spreads
    new connections over them. That is how to run more than one worker: uvicorn's own ``--workers`` binds
    without TCP_NODELAY (design.md: ~40 ms per small response), and each process here keeps its own
    micro-batcher, model and inference-log writer.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class DrainingServer(uvicorn.Server):
    """uvicorn, with SIGTERM as orchestrators expect it: ``on_drain`` at once (readiness goes 503, new
    requests are refused with ``Connection: close``) and the sockets stay open for ``drain_s`` while load
    balancers notice; then uvicorn's graceful shutdown lets in-flight and queued requests finish. The
    signal is not raised again afterwards (uvicorn's default, which made a clean drain exit 143): exit
    status 0. A second SIGTERM, or SIGINT, is uvicorn's own handling: shut down now."""

    def __init__(self, config: uvicorn.Config, drain_s: float, on_drain: Callable[[], None]) -> None:
        super().__init__(config)
        self.drain_s = drain_s
        self.on_drain = on_drain
        self.drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self.drain_until is not None:
            super().handle_exit(sig, frame)
            return
        self.drain_until = time.monotonic() + self.drain_s
        self.on_drain()

    async def on_tick(self, counter: int) -> bool:
        if self.drain_until is not None and time.monotonic() >= self.drain_until:
            self.should_exit = True
        return await super().on_tick(counter)


def make_server(app, log_level: str = "info", **config) -> DrainingServer:  # type: ignore[no-untyped-def]
    """A uvicorn server for ``app`` (``create_app``'s) with the no-delay protocol and the drain of its
    ``shutdown`` settings; ``server.run(sockets=[bind(...)])``."""
    service = app.state.service
    shutdown = service.settings.shutdown
    return DrainingServer(
        uvicorn.Config(
            app,
            http=NoDelayProtocol,
            lifespan="on",
            log_level=log_level,
            access_log=False,
            timeout_graceful_shutdown=shutdown.graceful_s,
            **config,
        ),
        drain_s=shutdown.drain_s,
        on_drain=service.drain,
    )
