"""The gateway: listeners, the route table the control plane fills, draining, and what it measures."""

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
from collections import Counter
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
SWEEP_SECONDS = 0.25


class Gateway:
    """One gateway process. `apply` replaces its routes; `drain` waits out a removed instance's requests."""

    def __init__(self, domain: str, access_log: Path | None = None, limits: Limits | None = None) -> None:
        self.table = RouteTable(domain)
        self.limits = limits or Limits()
        self.clients: set[ClientConnection] = set()
        self.now = time.monotonic()  # coarse time for deadlines, advanced by the sweep
        self._request_ids = itertools.count()
        self._request_id_prefix = os.urandom(4).hex().encode()
        self.access_log = AccessLog(access_log) if access_log else None
        self.unrouted: Counter[int] = Counter()  # answers that went to no app (404, 400, 408, 431), by status
        self.loop: asyncio.AbstractEventLoop
        self._servers: list[asyncio.Server] = []
        self._draining: dict[str, Endpoint] = {}  # out of the table, maybe with requests in flight
        self._flusher: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def listen(self, host: str, port: int, *, reuse_port: bool = False) -> tuple[str, int]:
        """Serve on HOST:PORT; returns the bound address (port 0 picks one)."""
        self.loop = asyncio.get_running_loop()
        server = await self.loop.create_server(
            lambda: ClientConnection(self), host, port, reuse_port=reuse_port, backlog=BACKLOG
        )
        for sock in server.sockets:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._servers.append(server)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep())
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

    @property
    def open_connections(self) -> int:
        return len(self.clients)

    def request_id(self) -> bytes:
        """A request id unique to this process's life: a random prefix and a counter (no system call)."""
        return b"%s%08x" % (self._request_id_prefix, next(self._request_ids))

    def prometheus(self) -> str:
        return render_prometheus(self.table.metrics.values(), self.open_connections, self.unrouted)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        for task in (self._flusher, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.access_log is not None:
            self._write_access_log(self.access_log.take())

    async def _sweep(self) -> None:
        """Enforce every deadline a few times a second, instead of a timer per request: timeouts are
        seconds long, so a quarter second late is fine, and the hot path only sets a number."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            self.now = now = time.monotonic()
            for client in list(self.clients):
                client.tick(now)
            oldest = now - self.limits.upstream_idle_timeout
            for endpoint in self.table.endpoints():
                while endpoint.idle and endpoint.idle[0].idle_since < oldest:
                    endpoint.idle.pop(0).close()

    async def _flush_access_log(self) -> None:
        assert self.access_log is not None
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            lines = self.access_log.take()  # on the loop's thread, where lines are added
            await asyncio.to_thread(self._write_access_log, lines)

    def _write_access_log(self, lines: list[str]) -> None:
        """Append `lines`; a disk that refuses them (full) costs these lines, never the gateway or its stop."""
        assert self.access_log is not None
        try:
            self.access_log.append(lines)
        except OSError as exc:
            log.warning("access log: %d lines not written: %s", len(lines), exc)
