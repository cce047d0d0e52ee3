"""The front door as the daemon runs it: a real HAProxy, driven by `FrontDoor` on an event loop thread, with
real backends."""

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway import FrontDoor, Limits, Listeners, RouteSpec, runtime
from tests.gateway.backend import start_backend
from tests.harness import free_port


@dataclass
class RunningGateway:
    front: FrontDoor
    loop: asyncio.AbstractEventLoop
    address: tuple[str, int]
    https: tuple[str, int]
    admin: tuple[str, int]

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    def apply(self, *routes: RouteSpec) -> None:
        """Serve these routes, returning once HAProxy does."""
        self.run(self._apply(routes))

    async def _apply(self, routes: tuple[RouteSpec, ...]) -> None:
        self.front.apply(routes)
        await self.front.settled()

    def run(self, coroutine):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def stats(self) -> list[dict[str, str]]:
        return self.run(runtime.stats(self.front.files.runtime_socket))  # type: ignore[no-any-return]

    def server(self, backend: str, address: str) -> dict[str, str] | None:
        return next((r for r in self.stats() if r["pxname"] == backend and r["svname"] == address), None)

    def open_connections(self) -> int:
        """Client connections HAProxy holds now (the frontend's current sessions)."""
        return next(int(r["scur"]) for r in self.stats() if r["pxname"] == "strata" and r["svname"] == "FRONTEND")

    def metrics(self) -> str:
        return httpx.get(f"http://{self.admin[0]}:{self.admin[1]}/metrics").text

    def raw(self, data: bytes, *, timeout: float = 5.0) -> bytes:
        """Send bytes on a fresh connection and read until the front door closes it (or the timeout)."""
        with socket.create_connection(self.address, timeout=timeout) as sock:
            sock.sendall(data)
            chunks = []
            try:
                while piece := sock.recv(65536):
                    chunks.append(piece)
            except (TimeoutError, ConnectionResetError):
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


Address = tuple[str, int]


def start_gateway(
    home: Path,
    limits: Limits | None = None,
    threads: int = 1,
    listeners: tuple[Address, Address, Address] | None = None,
) -> RunningGateway:
    """A FrontDoor on its own loop thread, on free ports (or `listeners`: HTTP, HTTPS, admin)."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    http, https, admin = listeners or tuple(("127.0.0.1", free_port()) for _ in range(3))
    front = FrontDoor(
        home / "haproxy", "localhost", Listeners(http, https, admin), access_log=home / "access.log",
        threads=threads, limits=limits,
    )  # fmt: skip
    asyncio.run_coroutine_threadsafe(front.start(), loop).result(timeout=30)
    return RunningGateway(front, loop, http, https, admin)


def stop_gateway(running: RunningGateway) -> None:
    running.run(running.front.close(stop_haproxy=True))
    running.loop.call_soon_threadsafe(running.loop.stop)


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path, Limits(header_timeout=1.0, upstream_timeout=1.0, connect_timeout=1.0))
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
    return f"127.0.0.1:{free_port()}"


@dataclass
class Hangup:
    """An instance that accepts each connection and closes it unanswered, as docker-proxy does for a container
    whose process is not listening: `address` HOST:PORT, `accepted` connections so far."""

    address: str
    accepted: int = 0


@pytest.fixture
def hangup() -> Iterator[Hangup]:
    listener = socket.create_server(("127.0.0.1", 0))
    found = Hangup(f"127.0.0.1:{listener.getsockname()[1]}")

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            found.accepted += 1
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    yield found
    listener.close()
