"""The listening socket: TCP_NODELAY always, and several processes on one port only when asked."""

from __future__ import annotations

import socket

import pytest

from serving.server import bind


def test_nodelay_and_reuse_port_lets_a_second_listener_share_the_port():
    first = bind("127.0.0.1", 0, reuse_port=True)
    try:
        port = first.getsockname()[1]
        assert first.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        second = bind("127.0.0.1", port, reuse_port=True)
        second.close()
    finally:
        first.close()


def test_without_reuse_port_a_second_listener_is_refused():
    first = bind("127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            bind("127.0.0.1", first.getsockname()[1])
    finally:
        first.close()
