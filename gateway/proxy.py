"""The reverse proxy: one protocol object per client connection and per upstream connection.

A client connection parses requests with httptools and answers them in order, one exchange at a time
(pipelined requests wait, reading paused past a bound). An exchange resolves its route by Host, takes a
token from its tenant's bucket, picks the instance with the fewest requests in flight, and streams the
request to it over a pooled keep-alive connection; the response streams back. Back-pressure runs both
ways: a side that cannot keep up pauses reading on the other. Bodies are never buffered whole.

Upgrade requests (WebSocket) are forwarded with their Upgrade headers; on `101` both connections become a
plain byte tunnel.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import httptools

from gateway.pages import body_length, page
from gateway.routes import Endpoint, Route

if TYPE_CHECKING:
    from gateway.server import Gateway

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
JOIN_BELOW = 16 * 1024
PENDING_LIMIT = 256 * 1024  # request body held while no upstream connection is attached yet


class RequestLineTooLong(Exception):
    """Raised from the parser's callback: the parser stops, and the client gets a 400."""


class Exchange:
    """One request and its response."""

    __slots__ = (
        "method",
        "keep_alive",
        "http10",
        "route",
        "head",
        "pending",
        "pending_bytes",
        "body_done",
        "chunked",
        "upgrade",
        "idempotent",
        "has_body",
        "received",
        "sent",
        "status",
        "started",
        "endpoint",
        "retried",
        "responded",
        "request_id",
        "host",
        "target",
        "local",
    )
    # Set from the request line and head (`on_message_begin`, `on_headers_complete`, `_route`):
    started: float
    method: bytes
    target: bytes
    http10: bool
    keep_alive: bool
    upgrade: bool
    idempotent: bool
    chunked: bool
    has_body: bool
    request_id: bytes
    head: bytes  # the request head as forwarded upstream

    def __init__(self) -> None:
        self.route: Route | None = None
        self.pending: list[bytes] = []  # request body read before an upstream connection was attached
        self.pending_bytes = 0
        self.body_done = False
        self.received = 0
        self.sent = 0
        self.status = 0
        self.endpoint: Endpoint | None = None
        self.retried = False
        self.responded = False  # the response head has gone to the client
        self.local: bytes | None = None  # a response the gateway gives itself
        self.host = b""


class ClientConnection(asyncio.Protocol):
    """One connection from a client; answers its requests in order."""

    def __init__(self, gateway: "Gateway") -> None:
        self.gateway = gateway
        self.loop = gateway.loop
        self.limits = gateway.limits
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Exchange] = deque()
        self.current: Exchange | None = None  # being parsed
        self.upstream: UpstreamConnection | None = None
        self.tunnel: UpstreamConnection | None = None
        self.paused_writing = False
        self.paused_for_queue = False
        self.paused_for_upstream = False
        self.upgrading = False  # an Upgrade request was read: what follows is not HTTP
        self.reading_head = False
        self.deadline = 0.0  # when waiting for a request head (or the next request) gives up; 0: never

    # connection events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream protocol's transport
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0] if peer else "unix").encode()
        self.gateway.clients.add(self)
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gateway.clients.discard(self)
        self._disarm()
        if self.upstream is not None:  # mid-exchange: that upstream connection cannot be reused
            self.upstream.abandon()
        if self.tunnel is not None:
            self.tunnel.close()
        for exchange in self.queue:
            self._release(exchange)
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.transport.write(data)
            return
        if self.upgrading:  # bytes after an Upgrade request, before the upstream's 101
            if self.queue:
                self._forward(self.queue[-1], data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            exchange = self.queue[-1] if self.queue else None
            if exchange is None or not exchange.upgrade:
                self._fail(400)
                return
            self.upgrading = True
            rest = data[upgrade.args[0] :]
            if rest and exchange.local is None:
                self._forward(exchange, rest)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, RequestLineTooLong):
                log.exception("gateway error while handling a request")  # a bug of ours, not bad input
            self._fail(400)
        except (httptools.HttpParserError, ValueError):
            self._fail(400)

    def pause_writing(self) -> None:  # the client reads slower than the upstream sends
        self.paused_writing = True
        if (source := self.upstream or self.tunnel) is not None:
            source.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused_writing = False
        if (source := self.upstream or self.tunnel) is not None:
            source.transport.resume_reading()

    # parser callbacks (requests)

    def on_message_begin(self) -> None:
        self._arm(self.limits.header_timeout)
        self.reading_head = True
        exchange = self.current = Exchange()
        exchange.started = time.perf_counter()
        self.url = b""
        self.headers: list[bytes] = []
        self.header_bytes = 0
        self.hosts: list[bytes] = []
        self.forwarded_for = b""
        self.request_id = b""
        self.connection_tokens = b""
        self.expect_continue = False
        self.content_length = -1
        self.request_chunked = False
        self.upgrade_header = b""

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_request_line:
            raise RequestLineTooLong

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.limits.max_header_bytes or len(self.headers) >= self.limits.max_headers:
            assert self.current is not None  # set by on_message_begin
            self.current.local = b"431"
            return
        lower = name.lower()
        if lower == b"host":
            self.hosts.append(value)
        elif lower == b"x-forwarded-for":
            self.forwarded_for = value
            return
        elif lower == b"x-request-id":
            self.request_id = value
        elif lower == b"connection":
            self.connection_tokens += b"," + value.lower()
            return
        elif lower == b"expect":
            self.expect_continue = value.lower() == b"100-continue"
            return
        elif lower == b"content-length":
            self.content_length = int(value) if value.isdigit() else -1
        elif lower == b"transfer-encoding":
            self.request_chunked = b"chunked" in value.lower()
            return
        elif lower == b"upgrade":
            self.upgrade_header = value
            return
        elif lower in HOP_BY_HOP or lower.startswith(b"x-forwarded-"):
            return
        self.headers.append(b"%s: %s\r\n" % (name, value))

    def on_headers_complete(self) -> None:
        self._disarm()
        self.reading_head = False
        parser, exchange = self.parser, self.current
        assert exchange is not None
        exchange.method = parser.get_method()
        exchange.http10 = parser.get_http_version() == "1.0"
        exchange.upgrade = parser.should_upgrade()
        exchange.keep_alive = parser.should_keep_alive() and not exchange.upgrade
        exchange.idempotent = exchange.method in IDEMPOTENT
        exchange.chunked = self.request_chunked
        exchange.has_body = self.content_length > 0 or exchange.chunked
        exchange.body_done = not exchange.has_body and not exchange.upgrade
        exchange.target = self.url
        exchange.request_id = self.request_id or self.gateway.request_id()
        if exchange.method == b"CONNECT":  # a reverse proxy: it routes to apps, it opens no tunnels
            exchange.local, exchange.keep_alive = b"405", False
        self.queue.append(exchange)
        if exchange.local is None:
            self._route(exchange)
        if len(self.queue) > self.limits.max_pipelined and not self.paused_for_queue:
            self.paused_for_queue = True
            self.transport.pause_reading()
        if len(self.queue) == 1:
            self._start(exchange)

    def on_body(self, body: bytes) -> None:
        exchange = self.current
        assert exchange is not None
        exchange.received += len(body)
        route = exchange.route
        if route is not None and exchange.received > route.max_body and exchange.local is None:
            if exchange.responded:
                self.transport.close()
                return
            exchange.local, exchange.keep_alive = b"413", False
            if self.queue and exchange is self.queue[0]:
                if self.upstream is not None:  # it has part of a body it will never get whole
                    self.upstream.abandon()
                    self.upstream = None
                self._release(exchange)
                self._answer_locally(exchange)
            return
        if exchange.local is None:
            self._forward(exchange, b"%x\r\n%s\r\n" % (len(body), body) if exchange.chunked else body)

    def on_message_complete(self) -> None:
        exchange = self.current
        assert exchange is not None
        exchange.body_done = True
        if exchange.chunked and exchange.local is None:
            self._forward(exchange, LAST_CHUNK)

    # exchanges

    def _route(self, exchange: Exchange) -> None:
        """Find the exchange's route and build the head to send upstream, or decide a local answer."""
        host = self._authority(exchange)
        if host is None:
            exchange.local = b"400"
            return
        exchange.host = host
        name = host.rsplit(b":", 1)[0] if host[-1:] != b"]" else host
        route = self.gateway.table.lookup(name.lower())
        if route is None:
            exchange.local = b"404"
            return
        exchange.route = route
        if self.content_length > route.max_body:
            exchange.local, exchange.keep_alive = b"413", False
            return
        wait = route.bucket.take()
        if wait:
            exchange.local = b"429:%d" % max(1, round(wait + 0.5))
            return
        if exchange.upgrade:
            self.headers.append(b"Connection: upgrade\r\nUpgrade: %s\r\n" % self.upgrade_header)
        elif exchange.chunked:
            self.headers.append(b"Transfer-Encoding: chunked\r\n")
        forwarded_for = self.forwarded_for + b", " + self.peer if self.forwarded_for else self.peer
        if not self.request_id:
            self.headers.append(b"X-Request-Id: %s\r\n" % exchange.request_id)
        # An HTTP/1.0 client is asked for in HTTP/1.0, so the response never comes chunked (it could not read it).
        version = b"HTTP/1.0" if exchange.http10 else b"HTTP/1.1"
        exchange.head = (
            b"%s %s %s\r\n%sX-Forwarded-For: %s\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: %s\r\n\r\n"
            % (exchange.method, exchange.target, version, b"".join(self.headers), forwarded_for, host)
        )
        if self.expect_continue:
            self.transport.write(CONTINUE)

    def _authority(self, exchange: Exchange) -> bytes | None:
        """The host a request is for, or None when that is ambiguous (then it is refused with 400).

        An absolute-form target (`GET http://host/path`) names the host itself and replaces the Host header
        (RFC 9112, 3.2.2); otherwise there must be exactly one Host header. Userinfo is never accepted.
        """
        if len(self.hosts) > 1:
            return None
        target = self.url
        if target[:1] == b"/":
            host = self.hosts[0] if self.hosts else b""
        else:
            scheme, separator, rest = target.partition(b"://")
            if not separator or scheme.lower() not in (b"http", b"https"):
                return None
            end = min((i for i in (rest.find(b"/"), rest.find(b"?"), rest.find(b"#")) if i >= 0), default=len(rest))
            host, path = rest[:end], rest[end:]
            exchange.target = path if path[:1] == b"/" else b"/" + path
            self.headers = [line for line in self.headers if line[:5].lower() != b"host:"]
            self.headers.append(b"Host: %s\r\n" % host)
        if not host or any(c in host for c in b"@, /\\"):
            return None
        return host

    def _start(self, exchange: Exchange) -> None:
        """Begin answering the exchange at the head of the queue."""
        if exchange.local is not None:
            self._answer_locally(exchange)
            return
        route = exchange.route
        assert route is not None
        endpoint = route.pick()
        if endpoint is None:
            exchange.local = b"503"
            self._answer_locally(exchange)
            return
        self._send_to(exchange, endpoint)

    def _send_to(self, exchange: Exchange, endpoint: Endpoint) -> None:
        exchange.endpoint = endpoint
        endpoint.outstanding += 1
        assert exchange.route is not None  # only a routed exchange is sent
        exchange.route.metrics.in_flight += 1
        idle = endpoint.idle
        while idle:
            connection = idle.pop()
            if connection.usable():
                connection.attach(self, exchange, reused=True)
                return
        self.loop.create_task(self._connect(exchange, endpoint))

    async def _connect(self, exchange: Exchange, endpoint: Endpoint) -> None:
        try:
            _, connection = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: UpstreamConnection(endpoint, self.gateway), endpoint.host, endpoint.port
                ),
                self.limits.connect_timeout,
            )
        except (OSError, TimeoutError):
            endpoint.failed(self.limits)
            self.upstream_failed(exchange, reused=False)
            return
        if self.transport.is_closing() or exchange is not (self.queue[0] if self.queue else None):
            connection.park()
            self._release(exchange)
            return
        endpoint.failures = 0
        connection.attach(self, exchange, reused=False)

    def _forward(self, exchange: Exchange, data: bytes) -> None:
        if self.upstream is not None and self.queue and exchange is self.queue[0]:
            self.upstream.transport.write(data)
            return
        exchange.pending.append(data)
        exchange.pending_bytes += len(data)
        if exchange.pending_bytes > PENDING_LIMIT and not self.paused_for_upstream:
            self.paused_for_upstream = True  # no upstream to take the body yet: stop reading it
            self.transport.pause_reading()

    def upstream_attached(self) -> None:
        """The body read so far went upstream: read on (flow control is the upstream's from now)."""
        if self.paused_for_upstream:
            self.paused_for_upstream = False
            if not self.paused_for_queue:
                self.transport.resume_reading()

    def upstream_failed(self, exchange: Exchange, *, reused: bool) -> None:
        """The upstream refused, reset or closed before answering: retry once if that is safe, else 502."""
        failed = exchange.endpoint
        self.upstream = None
        self._release(exchange)
        route = exchange.route
        if route is not None:
            route.metrics.upstream_errors += 1
        if self.transport.is_closing():
            return
        safe = exchange.idempotent and not exchange.has_body and not exchange.upgrade and not exchange.responded
        if safe and not exchange.retried and route is not None:
            exchange.retried = True
            # Another instance; or the same one afresh if it was a pooled connection that went stale.
            stale = reused and failed is not None and not failed.removed
            endpoint = route.pick(exclude=failed) or (failed if stale else None)
            if endpoint is not None:
                self._send_to(exchange, endpoint)
                return
        if exchange.responded:
            self.transport.close()
            return
        exchange.local, exchange.keep_alive = b"502", False
        self._answer_locally(exchange)

    def upstream_timed_out(self, exchange: Exchange) -> None:
        """No response head in time: the instance's fault (504), unless the client never sent its whole body
        (408: the instance was waiting for it)."""
        self.upstream = None
        self._release(exchange)
        if not exchange.body_done:
            exchange.local, exchange.keep_alive = b"408", False
        else:
            if exchange.route is not None:
                exchange.route.metrics.upstream_errors += 1
            exchange.local, exchange.keep_alive = b"504", False
        self._answer_locally(exchange)

    def become_tunnel(self, upstream: "UpstreamConnection") -> None:
        """After a 101, bytes flow unparsed both ways until either side closes."""
        self.tunnel = upstream
        self.upstream = None
        self._disarm()
        if self.paused_writing:
            upstream.transport.pause_reading()

    def finished(self, exchange: Exchange) -> None:
        """The response is complete: record it, then answer the next request or wait for one."""
        self.upstream = None
        self._release(exchange)
        self._record(exchange)
        self.queue.popleft()
        if not exchange.keep_alive or not exchange.body_done or self.transport.is_closing():
            self.transport.close()
            return
        if self.paused_for_queue and len(self.queue) <= self.limits.max_pipelined:
            self.paused_for_queue = False
            self.transport.resume_reading()
        if self.queue:
            self._start(self.queue[0])
        else:
            self._arm(self.limits.idle_timeout)

    def _answer_locally(self, exchange: Exchange) -> None:
        code = exchange.local or b"500"
        status, _, retry = code.partition(b":")
        exchange.status = int(status)
        close = not exchange.keep_alive or exchange.status in (400, 408, 413, 431, 502, 504) or not exchange.body_done
        retry_after = int(retry) if retry else (1 if exchange.status == 503 else None)
        request_id = exchange.request_id if exchange.route else b""
        response = page(exchange.status, close=close, retry_after=retry_after, request_id=request_id)
        self.transport.write(response)
        exchange.sent += body_length(response)
        exchange.responded = True
        if close:
            exchange.keep_alive = False
        self.finished(exchange)

    def _release(self, exchange: Exchange) -> None:
        if exchange.endpoint is not None:
            exchange.endpoint.release()
            exchange.endpoint = None
            assert exchange.route is not None  # an endpoint is only ever one of its route's
            exchange.route.metrics.in_flight -= 1

    def _record(self, exchange: Exchange) -> None:
        route = exchange.route
        elapsed = time.perf_counter() - exchange.started
        if route is not None:
            route.metrics.observe(exchange.status, elapsed, exchange.received, exchange.sent)
        else:
            self.gateway.unrouted[exchange.status] += 1
        log = self.gateway.access_log
        if log is not None:
            log.write(exchange, self.peer, elapsed)

    def _fail(self, status: int) -> None:
        """A request the parser refuses: answer it (if nothing else is being answered) and close."""
        if not self.transport.is_closing():
            if self.upstream is None and not (self.queue and self.queue[0].responded):
                self._refuse(status)
            self.transport.close()

    def _refuse(self, status: int) -> None:
        """Answer what never became a request (bad syntax, a head too big or too slow): counted and logged
        apart from the routes, since it has none."""
        response = page(status, close=True)
        self.transport.write(response)
        self.gateway.unrouted[status] += 1
        if self.gateway.access_log is not None:
            self.gateway.access_log.refusal(self.peer, status, body_length(response))

    def _arm(self, seconds: float) -> None:
        self.deadline = self.gateway.now + seconds

    def _disarm(self) -> None:
        self.deadline = 0.0

    def tick(self, now: float) -> None:
        """Called by the gateway's sweep: enforce this connection's deadlines (and its upstream's)."""
        if self.deadline and now > self.deadline:
            self._timed_out()
        elif self.upstream is not None and self.upstream.deadline and now > self.upstream.deadline:
            self.upstream.timed_out()

    def _timed_out(self) -> None:
        """No complete request head in time (slowloris), or an idle keep-alive connection."""
        self.deadline = 0.0
        if self.queue or self.transport.is_closing():
            return  # an exchange is under way: its own timeouts apply
        if self.reading_head:
            self._refuse(408)
        self.transport.close()


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to an instance; serves one exchange at a time, then returns to the pool."""

    def __init__(self, endpoint: Endpoint, gateway: "Gateway") -> None:
        self.endpoint = endpoint
        self.gateway = gateway
        self.limits = gateway.limits
        self.client: ClientConnection | None = None
        self.exchange: Exchange | None = None
        self.deadline = 0.0  # when the response head must have come (then 504); 0: not waiting
        self.idle_since = 0.0  # when it was parked in the pool
        self.closed = False
        self.out: list[bytes] | None = None  # what one read produced for the client, written as one

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream protocol's transport
        self.parser = httptools.HttpResponseParser(self)

    def usable(self) -> bool:
        return not self.closed and not self.transport.is_closing()

    def attach(self, client: ClientConnection, exchange: Exchange, *, reused: bool) -> None:
        self.client, self.exchange, self.reused = client, exchange, reused
        self.head_seen = False
        self.head_buffer = b""
        self.tunnelled = False
        client.upstream = self
        if client.paused_writing:
            self.transport.pause_reading()
        pending, exchange.pending, exchange.pending_bytes = exchange.pending, [], 0
        self.transport.writelines([exchange.head, *pending]) if pending else self.transport.write(exchange.head)
        self.deadline = self.gateway.now + self.limits.upstream_timeout
        client.upstream_attached()

    def park(self) -> None:
        """Back to the pool, idle; closed if the pool is full or the instance left the table."""
        self.client = self.exchange = None
        if self.endpoint.removed or len(self.endpoint.idle) >= self.limits.max_idle_per_endpoint or not self.usable():
            self.close()
            return
        self.transport.resume_reading()
        self.deadline = 0.0
        self.idle_since = self.gateway.now
        self.endpoint.idle.append(self)

    def abandon(self) -> None:
        """The client went away mid-exchange: this connection is in an unknown state."""
        self.client = self.exchange = None
        self.close()

    def close(self) -> None:
        self.closed = True
        self.transport.close()

    # connection events

    def data_received(self, data: bytes) -> None:
        """Response bytes go to the client as they came (one write per read); only the head is rewritten.
        The parser runs over them just to find where the response ends."""
        client = self.client
        if client is None:
            self.close()  # nothing was asked: unsolicited bytes on an idle connection
            return
        if self.tunnelled:
            client.transport.write(data)
            return
        self.out = []
        if self.head_seen:
            self.out.append(data)
            assert self.exchange is not None  # attached: a head was seen for it
            self.exchange.sent += len(data)
        else:
            self.head_buffer += data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # a 101 answered an Upgrade request: the rest is the tunnel's
            pass
        except httptools.HttpParserError:
            self._broken()
        finally:
            self._flush()
            self.out = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self in self.endpoint.idle:
            self.endpoint.idle.remove(self)
        client, exchange = self.client, self.exchange
        self.client = self.exchange = None
        if client is None or exchange is None:
            return
        if self.tunnelled:
            client.transport.close()
        elif not self.head_seen:
            if not self.reused:
                self.endpoint.failed(self.limits)
            client.upstream_failed(exchange, reused=self.reused)
        elif self.body_until_close and exc is None:
            client.finished(exchange)  # a body delimited by the connection's end is complete
        else:
            client.transport.close()  # cut off mid-response: the client must not take it as whole

    def pause_writing(self) -> None:  # the instance reads slower than the client sends
        if self.client is not None:
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.client is not None and not self.client.paused_for_queue:
            self.client.transport.resume_reading()

    # parser callbacks (responses): only the boundaries; headers and body are never called back

    def on_headers_complete(self) -> None:
        client, exchange = self.client, self.exchange
        if client is None or exchange is None:
            return
        buffered = self.head_buffer
        end = buffered.find(b"\r\n\r\n") + 4
        head, rest = buffered[:end], buffered[end:]
        status = self.parser.get_status_code()
        if status < 200 and status != 101:
            self.head_buffer = rest  # a 1xx interim answer: the gateway sent its own 100 Continue
            return
        self.deadline = 0.0
        self.head_seen = True
        self.head_buffer = b""
        exchange.status = status
        exchange.responded = True
        lower = head.lower()
        if status == 101 and exchange.upgrade:
            self._send(_client_head(head, lower, keep=UPGRADE_HEADERS) + rest)
            self.tunnelled = True
            client.become_tunnel(self)
            return
        bodiless = exchange.method == b"HEAD" or status in (204, 304)
        framed = b"\ncontent-length:" in lower or b"\ntransfer-encoding:" in lower
        self.body_until_close = not (bodiless or framed)
        if self.body_until_close:
            exchange.keep_alive = False  # the body ends when a connection closes
        extra = b"" if exchange.keep_alive else b"Connection: close\r\n"
        if exchange.http10 and exchange.keep_alive:
            extra = b"Connection: keep-alive\r\n"
        self._send(_client_head(head, lower, extra=extra))
        if rest and not bodiless:
            exchange.sent += len(rest)
            self._send(rest)
        if exchange.method == b"HEAD":
            # httptools cannot be told a response answers HEAD: it is complete now.
            self.parser = httptools.HttpResponseParser(self)
            self._done(reuse=True)

    def on_message_complete(self) -> None:
        if self.client is None or not self.head_seen or self.tunnelled:
            return
        self._done(reuse=self.parser.should_keep_alive())

    # internals

    def _send(self, data: bytes) -> None:
        if self.out is not None:
            self.out.append(data)
        elif self.client is not None:
            self.client.transport.write(data)

    def _flush(self) -> None:
        """Write what this read produced for the client: head and body in one system call."""
        out = self.out
        if out and self.client is not None:
            if len(out) == 1:
                self.client.transport.write(out[0])
            elif len(out[-1]) < JOIN_BELOW:  # small: one copy is cheaper than a vectored write
                self.client.transport.write(b"".join(out))
            else:
                self.client.transport.writelines(out)
            out.clear()

    def _done(self, *, reuse: bool) -> None:
        self._flush()  # before the client moves on (or closes)
        client, exchange = self.client, self.exchange
        assert client is not None and exchange is not None
        if reuse and exchange.body_done:
            self.park()
        else:
            self.client = self.exchange = None
            self.close()
        client.finished(exchange)

    def _broken(self) -> None:
        """The instance sent something that is not HTTP."""
        self._flush()
        self._give_up(lambda client, exchange: client.upstream_failed(exchange, reused=False))

    def timed_out(self) -> None:
        """No response head within the upstream timeout: 504 (or a cut, if the head had gone out)."""
        self.deadline = 0.0
        self._give_up(lambda client, exchange: client.upstream_timed_out(exchange))

    def _give_up(self, before_head: Callable[[ClientConnection, Exchange], None]) -> None:
        """Close this connection; the client's response is cut if it had begun, else `before_head` answers."""
        client, exchange = self.client, self.exchange
        self.client = self.exchange = None
        self.close()
        if client is not None and exchange is not None:
            if self.head_seen:
                client.transport.close()
            else:
                before_head(client, exchange)


RESPONSE_HOP_BY_HOP = (b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade")
UPGRADE_HEADERS = (b"connection", b"upgrade")


def _client_head(head: bytes, lower: bytes, *, extra: bytes = b"", keep: tuple[bytes, ...] = ()) -> bytes:
    """The response head for the client: HTTP/1.1, without the hop-by-hop headers (`keep` excepted), plus
    `extra`. Transfer-Encoding stays: the body passes through in the framing it came in."""
    if any(b"\n" + name + b":" in lower for name in RESPONSE_HOP_BY_HOP if name not in keep):
        lines = head[:-4].split(b"\r\n")
        kept = [lines[0]] + [
            line
            for line in lines[1:]
            if (name := line.split(b":", 1)[0].strip().lower()) not in RESPONSE_HOP_BY_HOP or name in keep
        ]
        head = b"\r\n".join(kept) + b"\r\n\r\n"
    return b"HTTP/1.1" + head[8:-2] + extra + b"\r\n"
