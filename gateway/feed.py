"""Routes for gateway worker processes: the daemon's gateway shares its table over a unix socket.

With `--gateway-workers N`, the daemon runs one gateway in its own process and N-1 more as processes on the
same port (SO_REUSEPORT). Each worker connects to the feed and gets the whole route table at once and
after every change (one JSON line each), and answers drain requests when an instance leaves, so the
control plane stops a container only after every worker finished its requests. A worker whose feed
closes (the daemon is gone) stops.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gateway.routes import RouteSpec
from gateway.server import Gateway

log = logging.getLogger(__name__)


def encode(routes: Iterable[RouteSpec]) -> bytes:
    return json.dumps({"routes": [asdict(route) for route in routes]}).encode() + b"\n"


def decode(message: dict[str, Any]) -> list[RouteSpec]:
    return [
        RouteSpec(**{**route, "hostnames": tuple(route["hostnames"]), "endpoints": tuple(route["endpoints"])})
        for route in message["routes"]
    ]


class RouteFeed:
    """The daemon's side: every connected worker gets each table, and is asked to drain."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._current = encode([])
        self._workers: dict[asyncio.StreamWriter, dict[str, asyncio.Future[bool]]] = {}
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, str(self.path))
        self.path.chmod(0o600)

    def publish(self, routes: Iterable[RouteSpec]) -> None:
        self._current = encode(routes)
        for writer in self._workers:
            writer.write(self._current)

    async def drain(self, address: str, timeout: float) -> bool:
        """Ask every worker to drain `address`; True once all did within `timeout`."""
        waiting = []
        for writer, pending in self._workers.items():
            future = pending[address] = asyncio.get_running_loop().create_future()
            writer.write(json.dumps({"drain": address}).encode() + b"\n")
            waiting.append(future)
        if not waiting:
            return True
        try:
            return all(await asyncio.wait_for(asyncio.gather(*waiting), timeout))
        except TimeoutError:
            return False

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._workers):
            writer.close()
        self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending: dict[str, asyncio.Future[bool]] = {}
        self._workers[writer] = pending
        writer.write(self._current)
        try:
            while line := await reader.readline():
                reply = json.loads(line)
                future = pending.pop(reply["drained"], None)
                if future is not None and not future.done():
                    future.set_result(bool(reply["ok"]))
        except (ConnectionError, ValueError, KeyError) as exc:
            log.warning("gateway worker feed: %s", exc)
        finally:
            del self._workers[writer]
            for future in pending.values():  # a worker that went away has nothing in flight
                if not future.done():
                    future.set_result(True)
            writer.close()


async def follow(path: Path, gateway: Gateway) -> None:
    """The worker's side: apply each table, drain when asked; return when the feed closes."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    tasks: set[asyncio.Task[None]] = set()

    async def drain(address: str) -> None:
        ok = await gateway.drain(address)
        writer.write(json.dumps({"drained": address, "ok": ok}).encode() + b"\n")

    try:
        while line := await reader.readline():
            message = json.loads(line)
            if "routes" in message:
                gateway.apply(decode(message))
            elif "drain" in message:
                task = asyncio.create_task(drain(message["drain"]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
