"""The front door over real sockets — HAProxy driven by `FrontDoor` — routing, failure answers, streaming,
upgrades, hostile input, limits. Where HAProxy answers differently from the Python gateway before it, and as
safely, the expectation says so (docs/reliability.md lists each)."""

import asyncio
import base64
import hashlib
import json
import os
import socket
import threading
import time

import httpx
import pytest

from gateway import Limits
from tests.gateway.backend import start_backend
from tests.gateway.conftest import RunningGateway, route, start_gateway, stop_gateway


def get(gw: RunningGateway, host: str, path: str = "/", **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.get(gw.url + path, headers={"Host": host, **kwargs.pop("headers", {})}, **kwargs)


def seen(response: httpx.Response) -> dict[str, str]:
    """The request headers as the backend received them (lower-cased names)."""
    return {name.lower(): value for name, value in response.json()["headers"]}


# routing


def test_routes_by_host_and_extra_hostname_ignoring_port_and_case(gw, backends) -> None:  # type: ignore[no-untyped-def]
    gw.apply(
        route("web", "acme", backends["one"], hostnames=("shop.example.com",)), route("api", "acme", backends["two"])
    )
    assert get(gw, "web.acme.localhost").json()["name"] == "one"
    assert get(gw, "WEB.Acme.localhost:8080").json()["name"] == "one"
    assert get(gw, "shop.example.com").json()["name"] == "one"
    assert get(gw, "api.acme.localhost").json()["name"] == "two"


def test_an_unknown_host_is_404_naming_no_tenant(gw, backends) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", backends["one"]))
    for host in ("web.globex.localhost", "web.acme.localhost.evil", "acme.localhost", "evil"):
        answer = get(gw, host)
        assert answer.status_code == 404
        assert "acme" not in answer.text and "web" not in answer.text


def test_an_app_without_ready_instances_is_503_with_retry_after(gw) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme"))
    answer = get(gw, "web.acme.localhost")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"


def test_requests_are_spread_over_the_instances(gw, backends) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", backends["one"], backends["two"]))
    names = [get(gw, "web.acme.localhost").json()["name"] for _ in range(10)]
    assert names.count("one") == names.count("two") == 5


def test_a_refused_instance_is_retried_on_another_and_503_when_none_answers(gw, backends, dead) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", dead, backends["one"]))
    assert all(get(gw, "web.acme.localhost").json()["name"] == "one" for _ in range(4))
    # a refused connection carried no request: even a POST goes to another instance
    posted = [httpx.post(gw.url + "/", content=b"x", headers={"Host": "web.acme.localhost"}) for _ in range(4)]
    assert [answer.status_code for answer in posted] == [200] * 4
    gw.apply(route("web", "acme", dead, backends["one"]), route("api", "acme", dead))
    alone = httpx.post(gw.url + "/", content=b"x", headers={"Host": "api.acme.localhost"})
    assert alone.status_code == 503 and alone.headers["retry-after"] == "1"  # HAProxy's answer: none reachable


def test_an_instance_hanging_up_unanswered_gets_idempotent_requests_retried_elsewhere(gw, backends, hangup) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", hangup.address, backends["one"]))
    assert all(get(gw, "web.acme.localhost").json()["name"] == "one" for _ in range(4))
    assert hangup.accepted >= 1  # each one it took was answered by `one`
    # a POST may have been acted on before the hang-up: never replayed, 502, and the connection is not reused
    gw.apply(route("web", "acme", hangup.address, backends["one"]), route("api", "acme", hangup.address))
    posted = httpx.post(gw.url + "/", content=b"x", headers={"Host": "api.acme.localhost"})
    assert posted.status_code == 502 and posted.headers["connection"] == "close"


def test_an_instance_failing_in_a_row_is_ejected_for_a_while(gw, backends, dead) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", dead, backends["one"]))
    for _ in range(8):
        assert get(gw, "web.acme.localhost").status_code == 200
    state = gw.server("acme.web", dead)
    assert state is not None and state["status"].startswith("DOWN"), state


def test_a_slow_instance_is_504(gw, backends) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", backends["one"]))  # the fixture's upstream timeout is 1 s
    answer = get(gw, "web.acme.localhost", "/slow=2", timeout=10)
    assert answer.status_code == 504
    assert get(gw, "web.acme.localhost").status_code == 200


def test_a_burst_waits_in_the_front_doors_queue_not_at_an_instances_small_backlog(gw, backends) -> None:  # type: ignore[no-untyped-def]
    """An instance answering one connection at a time, its accept queue as long as the front door's bound of
    connections to it: a burst of 100 at once waits in HAProxy's queue, and every request is answered. Without
    the bound HAProxy opens all 100, the kernel drops most SYNs, and their retransmission (1 s) outlasts the
    fixture's connect timeout (503), or a request sent on a handshake the kernel never finished hangs (504)."""
    bound = Limits().instance_connections
    listener = socket.create_server(("127.0.0.1", 0), backlog=bound - 1)  # Linux queues backlog + 1

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            with connection:
                connection.recv(65536)
                time.sleep(0.002)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    threading.Thread(target=serve, daemon=True).start()
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    gw.apply(route("web", "acme", backends["one"]))
    gw.apply(route("web", "acme", address))  # added at run time, as a woken instance is
    assert f"maxconn {bound}" in gw.front.files.config.read_text()

    try:
        answers = asyncio.run(
            _burst(gw.address, b"GET / HTTP/1.1\r\nHost: web.acme.localhost\r\nConnection: close\r\n\r\n", 100)
        )
    finally:
        listener.close()
    assert set(answers) == {b"200"}


async def _burst(address: tuple[str, int], request: bytes, count: int) -> list[bytes]:
    """`count` requests at once, each on a connection of its own (raw sockets: a client each would cost more
    than the front door): each one's status."""

    async def one() -> bytes:
        try:
            reader, writer = await asyncio.open_connection(*address)
            writer.write(request)
            answer = await reader.read()
            writer.close()
        except OSError:
            answer = b""
        return answer[9:12]

    return await asyncio.gather(*(one() for _ in range(count)))


# HTTP correctness


def test_forwarded_headers_are_added_and_hop_by_hop_ones_removed(gw, backends) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", backends["one"]))
    headers = seen(
        get(
            gw,
            "web.acme.localhost",
            headers={
                "X-Forwarded-For": "10.1.2.3",
                "Keep-Alive": "timeout=5",
                "Connection": "keep-alive, X-Secret",
                "TE": "trailers",
                "X-Custom": "kept",
            },
        )
    )
    assert headers["host"] == "web.acme.localhost"
    assert headers["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http" and headers["x-forwarded-host"] == "web.acme.localhost"
    assert headers["x-custom"] == "kept" and len(headers["x-request-id"]) >= 16
    assert not {"keep-alive", "te", "connection"} & set(headers)


def test_a_request_id_sent_by_the_client_is_kept(gw, backends) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", backends["one"]))
    assert seen(get(gw, "web.acme.localhost", headers={"X-Request-Id": "abc-123"}))["x-request-id"] == "abc-123"


def test_keep_alive_on_both_sides(gw, backends) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", backends["one"]))
    with httpx.Client() as client:
        for _ in range(5):
            assert client.get(gw.url, headers={"Host": "web.acme.localhost"}).status_code == 200
    deadline = time.monotonic() + 5
    while gw.open_connections() and time.monotonic() < deadline:  # the client closed its connection
        time.sleep(0.05)
    assert gw.open_connections() == 0
    server = gw.server("acme.web", backends["one"])
    assert server is not None and int(server["connect"]) == 1 and int(server["reuse"]) == 4  # one upstream served all


def test_chunked_download_and_upload(gw, backends) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", backends["one"]))
    answer = get(gw, "web.acme.localhost", "/chunked")
    assert answer.headers["transfer-encoding"] == "chunked" and answer.text == "alpha-beta-gamma"
    pieces = [b"first", b"second", b"third"]
    uploaded = httpx.post(gw.url + "/", content=iter(pieces), headers={"Host": "web.acme.localhost"})
    assert uploaded.text == f"{hashlib.sha256(b''.join(pieces)).hexdigest()} 16"


def test_ten_mib_stream_both_ways(gw, backends) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", backends["one"]))
    size, block = 10 << 20, os.urandom(64 << 10)
    up = httpx.post(
        gw.url + "/",
        content=(block for _ in range(size // len(block))),
        headers={"Host": "web.acme.localhost"},
        timeout=60,
    )
    received = 0
    with httpx.stream("GET", gw.url + f"/bytes={size}", headers={"Host": "web.acme.localhost"}) as down:
        for piece in down.iter_raw():
            received += len(piece)
    assert up.text == f"{hashlib.sha256(block * (size // len(block))).hexdigest()} {size}"
    assert received == size


def test_head_and_expect_continue(gw, backends) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", backends["one"]))
    head = httpx.head(gw.url + "/", headers={"Host": "web.acme.localhost"})
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
    answer = gw.raw(
        b"POST / HTTP/1.1\r\nHost: web.acme.localhost\r\nContent-Length: 5\r\n"
        b"Expect: 100-continue\r\nConnection: close\r\n\r\nhello"
    )
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 ")
    assert hashlib.sha256(b"hello").hexdigest().encode() in answer


def test_a_websocket_echoes_through_the_gateway(gw, backends) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", backends["one"]))
    key = base64.b64encode(os.urandom(16))
    with socket.create_connection(gw.address, timeout=5) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: web.acme.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101 ")
        expected = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        assert b"sec-websocket-accept: " + expected.lower() in head.lower()
        for text in (b"hello", b"through the gateway"):
            mask = os.urandom(4)
            sock.sendall(bytes([0x81, 0x80 | len(text)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text)))
            frame = sock.recv(2 + len(text))
            assert frame == bytes([0x81, len(text)]) + text


# hostile input


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET / HTTP/1.1\r\nHost: web.acme.localhost\r\nHost: other.globex.localhost\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: user@web.acme.localhost\r\n\r\n", b"400"),
        (b"GET http://user@web.acme.localhost/ HTTP/1.1\r\nHost: web.acme.localhost\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\n\r\n", b"400"),
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: web.acme.localhost\r\nX-A: b\x00c\r\n\r\n", b"400"),
        (
            b"POST / HTTP/1.1\r\nHost: web.acme.localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
            b"400",
        ),
        # both framings: HAProxy reads it as chunked (RFC 9112 6.3), drops Content-Length and waits for a chunk
        # that never ends; nothing reaches the app
        (
            b"POST / HTTP/1.1\r\nHost: web.acme.localhost\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nabc",
            b"408",
        ),
        # a head past HAProxy's 16 KiB buffer, or past 101 header lines: 400 (the Python gateway said 431)
        (b"GET / HTTP/1.1\r\nHost: web.acme.localhost\r\n" + b"X-Big: " + b"a" * 40_000 + b"\r\n\r\n", b"400"),
        (
            b"GET / HTTP/1.1\r\nHost: web.acme.localhost\r\n"
            + b"".join(b"X-%d: 1\r\n" % i for i in range(200))
            + b"\r\n",
            b"400",
        ),
        (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: web.acme.localhost\r\n\r\n", b"414"),
        (b"CONNECT web.acme.localhost:443 HTTP/1.1\r\nHost: web.acme.localhost\r\n\r\n", b"405"),
        # a chunked body promised and never sent: the client's delay (408), not the app's (504)
        (b"POST / HTTP/1.1\r\nHost: web.acme.localhost\r\nTransfer-Encoding: chunked\r\n\r\n", b"408"),
    ],
)
def test_hostile_requests_are_refused_and_the_gateway_keeps_serving(gw, backends, request_bytes, status) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", backends["one"]))
    answer = gw.raw(request_bytes)
    assert answer.split(b" ", 2)[1] == status, answer[:200]
    assert b"HTTP/1.1 200" not in answer
    assert get(gw, "web.acme.localhost").status_code == 200


def test_an_absolute_form_target_must_agree_with_the_host_header(gw, backends) -> None:  # type: ignore[no-untyped-def]
    """HAProxy refuses an authority and a Host that disagree (the Python gateway routed by the authority)."""
    gw.apply(route("web", "acme", backends["one"]), route("web", "globex", backends["two"]))
    refused = gw.raw(
        b"GET http://web.acme.localhost/path?q=1 HTTP/1.1\r\nHost: web.globex.localhost\r\nConnection: close\r\n\r\n"
    )
    assert refused.startswith(b"HTTP/1.1 400 ") and b"one" not in refused and b"two" not in refused
    answer = gw.raw(
        b"GET http://web.acme.localhost/path?q=1 HTTP/1.1\r\nHost: web.acme.localhost\r\nConnection: close\r\n\r\n"
    )
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["name"] == "one" and body["path"].endswith("/path?q=1")


def test_slowloris_is_cut_off_by_the_header_timeout(gw, backends) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", backends["one"]))  # the fixture's header timeout is 1 s
    started = time.monotonic()
    with socket.create_connection(gw.address, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: web.acme.localhost\r\n")
        for _ in range(20):
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
            time.sleep(0.2)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408") or answer == b""
    assert time.monotonic() - started < 5


# limits


def test_a_body_past_the_tenants_limit_is_413(gw, backends) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", backends["one"], max_body=1000))
    declared = httpx.post(gw.url + "/", content=b"x" * 1001, headers={"Host": "web.acme.localhost"})
    assert declared.status_code == 413
    streamed = httpx.post(gw.url + "/", content=iter([b"x" * 600, b"x" * 600]), headers={"Host": "web.acme.localhost"})
    assert streamed.status_code == 413
    assert httpx.post(gw.url + "/", content=b"x" * 1000, headers={"Host": "web.acme.localhost"}).status_code == 200


def test_a_tenant_past_its_rate_gets_429_and_another_tenant_does_not(gw, backends) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", backends["one"], rate=5, burst=5), route("web", "globex", backends["two"]))
    with httpx.Client() as client:
        answers = [client.get(gw.url, headers={"Host": "web.acme.localhost"}) for _ in range(20)]
        others = [client.get(gw.url, headers={"Host": "web.globex.localhost"}).status_code for _ in range(20)]
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(200) >= 5 and statuses.count(429) >= 10
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers if a.status_code == 429)
    assert others == [200] * 20


# route updates


def test_an_instance_removed_mid_request_finishes_it_and_drains(gw, backends) -> None:  # type: ignore[no-untyped-def]
    slow_server, slow = start_backend("slow")
    try:
        gw.apply(route("web", "acme", slow))
        result: dict[str, httpx.Response] = {}
        worker = threading.Thread(target=lambda: result.setdefault("r", get(gw, "web.acme.localhost", "/slow=0.5")))
        worker.start()
        time.sleep(0.2)
        gw.apply(route("web", "acme", backends["one"]))  # the slow instance leaves the table mid-request
        assert get(gw, "web.acme.localhost").json()["name"] == "one"  # new requests go to the new table
        assert gw.run(gw.front.drain(slow)) is True  # returns once the in-flight request is done
        worker.join()
        assert result["r"].status_code == 200 and result["r"].json()["name"] == "slow"
    finally:
        slow_server.shutdown()


def wait_for(condition, seconds: float = 10.0):  # type: ignore[no-untyped-def]
    """Poll `condition` until it returns something true (the access log is read once a second)."""
    deadline = time.monotonic() + seconds
    while not (result := condition()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


def test_metrics_count_each_app(gw, backends) -> None:  # type: ignore[no-untyped-def]
    gw.apply(route("web", "acme", backends["one"]))
    for _ in range(3):
        get(gw, "web.acme.localhost")
    get(gw, "web.acme.localhost", "/slow=2", timeout=10)  # 504
    text = gw.metrics()  # HAProxy's Prometheus exporter on the admin listener
    assert 'haproxy_backend_http_responses_total{proxy="acme.web",code="2xx"} 3' in text
    assert 'haproxy_backend_http_responses_total{proxy="acme.web",code="5xx"} 1' in text
    traffic = wait_for(lambda: (t := gw.front.traffic("acme", "web")) and t.requests == 4 and t)
    assert traffic and traffic.error_rate == 0.25 and traffic.p50_ms is not None

    gw.apply(route("api", "acme", backends["one"]))  # web deleted: its traffic goes with it
    assert wait_for(lambda: gw.front.traffic("acme", "web") is None)


def test_the_front_doors_own_answers_and_refusals_are_logged_and_counted(tmp_path, backends) -> None:  # type: ignore[no-untyped-def]
    running = start_gateway(tmp_path, Limits(header_timeout=0.5))
    log = tmp_path / "access.log"
    try:
        running.apply(route("web", "acme", backends["one"]))
        assert get(running, "nowhere.localhost").status_code == 404
        assert running.raw(b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")  # never a request
        assert running.raw(b"GET / HTTP/1.1\r\nHost: web.acme.localhost\r\n").startswith(b"HTTP/1.1 408")

        def lines() -> list[dict]:  # type: ignore[type-arg]
            text = log.read_text() if log.exists() else ""  # the daemon writes it each second
            return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

        by_status = wait_for(lambda: len(found := {line["status"]: line for line in lines()}) >= 3 and found)
        assert set(by_status) == {404, 400, 408}
        assert by_status[404]["bytes"] > 0  # the page's body (HAProxy counts none for what never was a request)
        assert by_status[400]["client"] == "127.0.0.1" and by_status[400]["tenant"] == "-"
        assert by_status[404]["host"] == "nowhere.localhost" and by_status[404]["app"] == "-"
        text = running.metrics()
        assert 'haproxy_frontend_http_responses_total{proxy="strata",code="4xx"} 3' in text
    finally:
        stop_gateway(running)
