"""The activator: the front door's last server for every app, where HAProxy sends a request when the app has
no ready instance (Knative's activator). It holds the request, asks the platform to wake the app (`Wake`),
and then serves it by passing the connection through to the woken instance; the reconciler meanwhile puts the
instances back as the app's servers, so later requests go to them directly.

It listens on loopback and is a `backup` server of each app's backend: HAProxy uses it only while no other
server is ready. The app is known by the request's Host, looked up in the front door's own hostname map, as
HAProxy routed it. Held requests are bounded per app (`HELD_PER_APP`; past it 503 with Retry-After at once),
so a burst at one sleeping app holds little and costs other tenants nothing; once it is awake they are passed
on a few at a time (`PASSING_PER_APP`). The request goes on with
`Connection: close` (an upgrade keeps its own), so the connection carries it alone and ends with its answer:
no later request can ride it to an instance that has gone to sleep again.
"""

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from gateway.pages import page

log = logging.getLogger(__name__)

HELD_PER_APP = 64  # requests held while their app wakes; past it 503 with Retry-After
HEAD_TIMEOUT_SECONDS = 10.0  # HAProxy sends a request's head at once: this only bounds a broken peer
WAKE_TIMEOUT_SECONDS = 30.0  # the longest a request is held for its app's wake-up
CONNECT_TIMEOUT_SECONDS = 5.0
# Held requests passed on to a woken instance at once, per app: all of them at the same instant overflow a small
# listen backlog (busybox's servers), and the dropped SYNs wait out the kernel's retransmissions (1, 3, 7, 15 s)
PASSING_PER_APP = 4
SLOT_SECONDS = 0.5  # the longest one of them holds its place before its answer starts
HEAD_BYTES = 64 * 1024  # HAProxy's own buffer bounds a head to 16 KiB, plus the headers it adds
COPY_BYTES = 64 * 1024
REFUSED = page(503, close=True, retry_after=1)
HOP_BY_HOP = (b"connection", b"keep-alive", b"proxy-connection")

AppKey = tuple[str, str]  # (tenant, app)
# (tenant, app) -> HOST:PORT of a ready instance, woken first if the app slept; None: it has none
Wake = Callable[[str, str], Awaitable[str | None]]


class Activator:
    """`app_of` names the app a hostname routes to (None: none); `wake` is the platform's."""

    def __init__(self, app_of: Callable[[str], AppKey | None], wake: Wake | None = None) -> None:
        self.app_of, self.wake = app_of, wake
        self.held: Counter[AppKey] = Counter()  # requests waiting for their app's wake-up
        self.proxied: Counter[AppKey] = Counter()  # requests passed through to an instance, not answered yet
        self._passing: dict[AppKey, asyncio.Semaphore] = {}
        self._server: asyncio.Server | None = None
        self.address = ""

    def in_flight(self, tenant: str, app: str) -> int:
        """Requests for the app here, held or passing through: an app with any must not be put to sleep."""
        return self.held[(tenant, app)] + self.proxied[(tenant, app)]

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen (on a free port unless given); returns HOST:PORT, HAProxy's server address for it."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=HEAD_BYTES)
        bound = self._server.sockets[0].getsockname()
        self.address = f"{bound[0]}:{bound[1]}"
        return self.address

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            writer.close()
            return
        key = self.app_of(_host(head))
        if key is None or self.wake is None or self.held[key] >= HELD_PER_APP:
            await _answer(writer, REFUSED)
            return
        self.held[key] += 1
        try:
            async with asyncio.timeout(WAKE_TIMEOUT_SECONDS):
                endpoint = await self.wake(*key)
        except Exception as exc:  # noqa: BLE001 - whatever the platform raised, the client gets its 503
            log.warning("activator: waking %s/%s: %s", *key, exc)
            endpoint = None
        finally:
            self.held[key] -= 1
        if endpoint is None:
            await _answer(writer, REFUSED)
            return
        self.proxied[key] += 1
        try:
            slot = self._passing.setdefault(key, asyncio.Semaphore(PASSING_PER_APP))
            await _pass_through(reader, writer, endpoint, _closing(head), slot)
        finally:
            self.proxied[key] -= 1
            if not self.held[key] and not self.proxied[key]:
                del self.held[key], self.proxied[key]
                self._passing.pop(key, None)


def _host(head: bytes) -> str:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            return value.strip().decode("latin-1").split(":")[0].lower()
    return ""


def _closing(head: bytes) -> bytes:
    """The head with `Connection: close` in place of its hop-by-hop headers, unless it asks for an upgrade."""
    lines = head[:-4].split(b"\r\n")
    if any(line.lower().startswith(b"upgrade:") for line in lines[1:]):
        return head
    kept = [line for line in lines[1:] if line.partition(b":")[0].strip().lower() not in HOP_BY_HOP]
    return b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n"


async def _answer(writer: asyncio.StreamWriter, response: bytes) -> None:
    with contextlib.suppress(OSError):
        writer.write(response)
        await writer.drain()
    writer.close()


async def _pass_through(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, endpoint: str, head: bytes, slot: asyncio.Semaphore
) -> None:
    """Send the head to the instance, then copy bytes both ways until the instance's answer ends. `slot` is held
    until the answer starts (or `SLOT_SECONDS` passed: a slow answer or a tunnel holds no other request back)."""
    host, _, port = endpoint.rpartition(":")
    async with slot:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        except (OSError, TimeoutError) as exc:
            log.warning("activator: %s does not answer: %s", endpoint, exc)
            await _answer(writer, page(502, close=True))
            return
        upstream_writer.write(head)
        sending = asyncio.ensure_future(_copy(reader, upstream_writer))
        first = b""
        with contextlib.suppress(TimeoutError, OSError):  # a slow answer, or none: copied (or ended) below
            async with asyncio.timeout(SLOT_SECONDS):
                first = await upstream_reader.read(COPY_BYTES)
    with contextlib.suppress(OSError, RuntimeError):
        writer.write(first)
    await _copy(upstream_reader, writer)
    sending.cancel()
    upstream_writer.close()
    writer.close()


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(COPY_BYTES):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (OSError, RuntimeError):  # the peer went, or its transport closed under us
        sink.close()
