"""A gateway running on its own event loop thread (uvloop, as in the daemon), with real backends."""

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvloop

from gateway import Gateway, Limits, RouteSpec
from tests.gateway.backend import start_backend


@dataclass
class RunningGateway:
    gateway: Gateway
    loop: asyncio.AbstractEventLoop
    address: tuple[str, int]

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    def apply(self, *routes: RouteSpec) -> None:
        self.run(self._apply(routes))

    async def _apply(self, routes: tuple[RouteSpec, ...]) -> None:
        self.gateway.apply(routes)

    def run(self, coroutine):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def raw(self, data: bytes, *, timeout: float = 5.0) -> bytes:
        """Send bytes on a fresh connection and read until the gateway closes it (or the timeout)."""
        with socket.create_connection(self.address, timeout=timeout) as sock:
            sock.sendall(data)
            chunks = []
            try:
                while piece := sock.recv(65536):
                    chunks.append(piece)
            except TimeoutError:
                pass
            return b"".join(chunks)


def route(
    app: str = "web",
    tenant: str = "acme",
    *endpoints: str,
    hostnames: tuple[str, ...] = (),
    rate: int = 10_000,
    burst: int = 10_000,
    max_body: int = 64 << 20,
) -> RouteSpec:
    return RouteSpec(tenant, app, hostnames, endpoints, rate, burst, max_body)


def start_gateway(limits: Limits | None = None, access_log: Path | None = None) -> RunningGateway:
    loop = uvloop.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    gateway = Gateway("localhost", access_log=access_log, limits=limits)
    address = asyncio.run_coroutine_threadsafe(gateway.listen("127.0.0.1", 0), loop).result()
    return RunningGateway(gateway, loop, address)


def stop_gateway(running: RunningGateway) -> None:
    running.run(running.gateway.close())
    running.loop.call_soon_threadsafe(running.loop.stop)


@pytest.fixture
def gw() -> Iterator[RunningGateway]:
    running = start_gateway(Limits(header_timeout=1.0, upstream_timeout=1.0, connect_timeout=1.0))
    yield running
    stop_gateway(running)


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, str]]:
    """Two live backends, `one` and `two`, by name: HOST:PORT."""
    servers = {name: start_backend(name) for name in ("one", "two")}
    yield {name: address for name, (_, address) in servers.items()}
    for server, _ in servers.values():
        server.shutdown()


@pytest.fixture
def dead() -> str:
    """An address where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"
