"""The front door (HAProxy) fed a generated stream of malformed and hostile HTTP (hypothesis; the corpus of
named attacks is in `tests/gateway/test_proxy.py`): bad request lines and targets, invalid header bytes, duplicated and
conflicting Host / Content-Length / Transfer-Encoding, huge and many headers, bodies that carry a second
request, sockets half-closed mid-request.

Each request gets one answer of an expected status or a close; no request is smuggled (the backends, which
parse keep-alive streams, see one request at most); the gateway keeps serving others, and holds no connection or
memory afterwards. HAProxy reads a bare LF as the end of a line (RFC 9112 allows it), so an empty line of one
LF ends the headers and what follows is a second request of the stream: it may be answered, by a refusal only
(400, and the connection closed), never by a backend.
"""

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httptools
import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway import Limits, runtime
from tests.gateway.backend import Handler, QuietServer
from tests.gateway.conftest import RunningGateway, route, start_gateway, stop_gateway

EXPECTED = {200, 400, 404, 405, 408, 413, 414, 422, 431, 501}  # 405: CONNECT; 422: HAProxy on a coding
# other than chunked in Transfer-Encoding; 431, 501: the backend says
ANSWER_TIMEOUT_SECONDS = 3.0  # past the fixture's header timeout (1 s): an incomplete request is cut off by then


HOSTILE_METHODS = [b"CONNECT", b"TRACE", b"get", b"G\x00T", b"", b"GET GET", b"\xff"]
HOSTILE_TARGETS = [
    b"*",
    b"//evil",
    b"/../../etc/passwd",
    b"/%00",
    b"/\x00",
    b"http://user@web.acme.localhost/",
    b"http://web.globex.localhost/x",
    b"web.acme.localhost:80",
    b"",
    b"/a b",
    b"/\r\nX: y",
]
HOSTILE_VERSIONS = [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"http/1.1", b"HTTP/1.1 x", b"", b"HTTP/1.10"]
HOSTS = [
    b"web.globex.localhost",
    b"web.acme.localhost:80",
    b"nope.localhost",
    b"user@web.acme.localhost",
    b"web.acme.localhost.",
    b"WEB.ACME.LOCALHOST",
    b"",
    b"web.acme.localhost\x00.evil",
]
LENGTHS = [b"0", b"3", b"5", b"-1", b"1e3", b" 3", b"3, 3", b"3,4", b"99999999999999999999", b"0x3"]
ENCODINGS = [b"chunked", b"gzip, chunked", b"chunked, gzip", b" chunked", b"identity", b"chunked\x00", b"cHuNkEd"]
BODIES = [b"3\r\nabc\r\n0\r\n\r\n", b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcdef\r\n0\r\n\r\n",
          b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web.globex.localhost\r\n\r\n",
          b"abcGET /smuggled HTTP/1.1\r\nHost: web.globex.localhost\r\nContent-Length: 5\r\n\r\nxxxxx"]  # fmt: skip
header_bytes = st.binary(min_size=1, max_size=24)


@st.composite
def hostile_requests(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A well-formed request to a routed app, then up to three hostile changes to it. Returns its raw bytes
    (ending with `Connection: close`, so that one answer at most is right) and whether the client half-closes
    its socket after sending them."""
    method = draw(st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"DELETE"]))
    target = draw(st.sampled_from([b"/", b"/a?b=c", b"/x/y", b"http://web.acme.localhost/"]))
    version = b"HTTP/1.1"
    headers = [(b"Host", b"web.acme.localhost")]
    headers += draw(st.lists(st.tuples(st.sampled_from([b"Accept", b"X-Custom", b"X-Request-Id"]), header_bytes.filter(
        lambda v: b"\r" not in v and b"\n" not in v)), max_size=3))  # fmt: skip
    body = draw(st.binary(max_size=64)) if method in (b"POST", b"PUT") else b""
    if body:
        headers.append((b"Content-Length", str(len(body)).encode()))
    cut: int | None = None
    for change in draw(st.lists(st.integers(0, 11), max_size=3)):
        if change == 0:
            method = draw(st.sampled_from(HOSTILE_METHODS))
        elif change == 1:
            target = draw(st.one_of(st.sampled_from(HOSTILE_TARGETS), st.binary(max_size=40)))
        elif change == 2:
            target = b"/" + b"a" * draw(st.integers(7_000, 12_000))
        elif change == 3:
            version = draw(st.sampled_from(HOSTILE_VERSIONS))
        elif change == 4:
            headers.insert(draw(st.integers(0, len(headers))), (b"Host", draw(st.sampled_from(HOSTS))))
        elif change == 5:
            headers.append((draw(st.sampled_from([b"Content-Length", b"content-length", b"Content-Length "])),
                            draw(st.sampled_from(LENGTHS))))  # fmt: skip
        elif change == 6:
            headers.append((b"Transfer-Encoding", draw(st.sampled_from(ENCODINGS))))
        elif change == 7:
            headers.append((draw(header_bytes), draw(st.binary(max_size=32))))  # any bytes at all
        elif change == 8:
            headers += [(b"X-Many-%d" % i, b"y") for i in range(draw(st.integers(90, 130)))]
        elif change == 9:
            headers.append((b"X-Huge", b"v" * draw(st.integers(8_000, 40_000))))
        elif change == 10:
            body = draw(st.sampled_from(BODIES))
        else:
            cut = draw(st.integers(0, 200))
    head = method + b" " + target + b" " + version + b"\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    data = head + b"Connection: close\r\n\r\n" + body
    return (data if cut is None else data[: len(data) * cut // 200]), draw(st.booleans())


class CountingHandler(Handler):
    """Counts every request line the backend parses; reads each body by its framing, answers 200 on keep-alive."""

    seen: list[bytes] = []
    hosts: list[tuple[str, str]] = []  # (the tenant whose backend this is, the Host it was asked for)
    tenant = "acme"
    lock = threading.Lock()

    def parse_request(self) -> bool:
        with self.lock:
            self.seen.append(self.raw_requestline)
        parsed = super().parse_request()
        if parsed:
            with self.lock:
                self.hosts.append((self.tenant, self.headers.get("Host", "")))
        return parsed

    def _answer(self) -> None:
        self._hash_body()
        self._send(200, b"ok")

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _answer  # noqa: N815


class GlobexHandler(CountingHandler):
    tenant = "globex"


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """acme's and globex's apps on backends of their own (sharing the counts): a request smuggled across
    tenants reaches the other's backend with a Host of the first."""
    servers = [QuietServer(("127.0.0.1", 0), handler) for handler in (CountingHandler, GlobexHandler)]
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    acme, globex = (f"127.0.0.1:{server.server_address[1]}" for server in servers)
    limits = Limits(header_timeout=1.0, upstream_timeout=2.0, connect_timeout=1.0)
    running = start_gateway(tmp_path_factory.mktemp("fuzzed"), limits)
    running.apply(route("web", "acme", acme), route("web", "globex", globex))
    yield running
    stop_gateway(running)
    for server in servers:
        server.shutdown()


def exchange(address: tuple[str, int], data: bytes, half_close: bool) -> bytes:
    with socket.create_connection(address, timeout=ANSWER_TIMEOUT_SECONDS) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the gateway may refuse and close before all was sent
        chunks = []
        try:
            while piece := sock.recv(65536):
                chunks.append(piece)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


def statuses(answer: bytes, *, head: bool) -> list[int]:
    """The status of each complete response in `answer` (parsed as a client would); answers to HEAD are heads
    alone, whatever their Content-Length says."""
    if head:
        first, end, rest = answer.partition(b"\r\n\r\n")
        if not end:
            return []
        return [int(first.split(b" ", 2)[1]), *statuses(rest, head=True)]
    found: list[int] = []

    class Responses:
        def on_message_complete(self) -> None:
            found.append(parser.get_status_code())

    parser = httptools.HttpResponseParser(Responses())
    try:
        parser.feed_data(answer)
    except httptools.HttpParserError as exc:
        raise AssertionError(f"the gateway answered what is not HTTP: {answer[:200]!r}") from exc
    return found


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(request=hostile_requests())
def test_a_generated_hostile_stream_is_refused_or_answered_once_never_smuggled(
    fuzzed: RunningGateway, request: tuple[bytes, bool]
) -> None:
    data, half_close = request
    CountingHandler.seen.clear()
    CountingHandler.hosts.clear()
    answer = exchange(fuzzed.address, data, half_close)
    answered = statuses(answer, head=data.startswith(b"HEAD "))
    event(f"answered {answered or ('nothing' if not answer else 'partly')}")
    assert all(status == 400 for status in answered[1:]), f"{answered} to one request: {answer[:300]!r}"
    assert set(answered) <= EXPECTED, f"{answered} to {data[:200]!r}"
    if answer and not answered:  # a close mid-answer is only right for a body the client cut short
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    time.sleep(0.01)  # the backend's parse of anything forwarded after the answer
    with CountingHandler.lock:
        assert len(CountingHandler.seen) <= 1, CountingHandler.seen
        crossed = [(t, host) for t, host in CountingHandler.hosts if host.lower().split(".")[1:2] != [t]]
        assert crossed == [], f"a request reached another tenant's backend: {crossed}"


def test_after_the_stream_the_front_door_serves_and_holds_nothing(fuzzed: RunningGateway) -> None:
    """Run after the generated stream (same module front door): it serves, and every hostile connection is
    gone; HAProxy's worker did not grow for them."""
    resident_before = worker_rss_kib(fuzzed)
    for _ in range(200):
        exchange(fuzzed.address, b"GET / HTTP/1.1\r\nHost: web.acme.localhost\r\n" + b"X: y\r\n" * 200, True)
    answer = httpx.get(fuzzed.url, headers={"Host": "web.acme.localhost"}, timeout=5)
    assert answer.status_code == 200
    deadline = time.monotonic() + 5
    while fuzzed.open_connections() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fuzzed.open_connections() == 0
    grown_kib = worker_rss_kib(fuzzed) - resident_before
    assert grown_kib < 20 * 1024, f"HAProxy's worker grew {grown_kib} KiB over 200 hostile connections"


def worker_rss_kib(running: RunningGateway) -> int:
    info = running.run(runtime.command(running.front.files.runtime_socket, "show info"))
    pid = next(line.split()[1] for line in info.splitlines() if line.startswith("Pid: "))
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
