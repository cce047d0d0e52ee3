"""The gateway: listeners, the route table the control plane fills, draining, and what it measures."""

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterable
from pathlib import Path

from gateway.accesslog import AccessLog
from gateway.limits import Limits
from gateway.metrics import Traffic, render_prometheus
from gateway.proxy import ClientConnection
from gateway.routes import Endpoint, RouteSpec, RouteTable

log = logging.getLogger(__name__)

BACKLOG = 4096
FLUSH_SECONDS = 1.0


class Gateway:
    """One gateway process. `apply` replaces its routes; `drain` waits out a removed instance's requests."""

    def __init__(self, domain: str, access_log: Path | None = None, limits: Limits | None = None) -> None:
        self.table = RouteTable(domain)
        self.limits = limits or Limits()
        self.open_connections = 0
        self.access_log = AccessLog(access_log) if access_log else None
        self.loop: asyncio.AbstractEventLoop
        self._servers: list[asyncio.Server] = []
        self._draining: dict[str, Endpoint] = {}  # out of the table, maybe with requests in flight
        self._flusher: asyncio.Task[None] | None = None

    async def listen(self, host: str, port: int, *, reuse_port: bool = False) -> tuple[str, int]:
        """Serve on HOST:PORT; returns the bound address (port 0 picks one)."""
        self.loop = asyncio.get_running_loop()
        server = await self.loop.create_server(
            lambda: ClientConnection(self), host, port, reuse_port=reuse_port, backlog=BACKLOG
        )
        for sock in server.sockets:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._servers.append(server)
        if self.access_log is not None and self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_access_log())
        return server.sockets[0].getsockname()[:2]

    def apply(self, routes: Iterable[RouteSpec]) -> None:
        """Replace the route table at once; instances that left it keep their in-flight requests."""
        gone = self.table.apply(routes)
        self._draining = {a: e for a, e in self._draining.items() if e.outstanding and not self.table.endpoint(a)}
        self._draining.update((endpoint.address, endpoint) for endpoint in gone if endpoint.outstanding)

    async def drain(self, address: str) -> bool:
        """Wait until no request is in flight to `address`, which left the table; False on timeout."""
        endpoint = self._draining.get(address)
        if endpoint is None:
            return True
        drained = await endpoint.drained(self.limits.drain_timeout)
        self._draining.pop(address, None)
        return drained

    def traffic(self, tenant: str, app: str) -> Traffic | None:
        metrics = self.table.metrics.get((tenant, app))
        return metrics.traffic() if metrics else None

    def prometheus(self) -> str:
        return render_prometheus(self.table.metrics.values(), self.open_connections)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self.access_log is not None:
            self.access_log.flush()

    async def _flush_access_log(self) -> None:
        assert self.access_log is not None
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            lines = self.access_log.take()  # on the loop's thread, where lines are added
            try:
                await asyncio.to_thread(self.access_log.append, lines)
            except OSError as exc:
                log.warning("access log: %s", exc)
