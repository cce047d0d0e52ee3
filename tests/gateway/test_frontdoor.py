"""The front door's life with a real HAProxy: reloads and route changes under load fail no request, a new
controller adopts the HAProxy an earlier one left serving, a dead HAProxy is started again, and HTTPS (the
local CA, SNI, TLS versions, HTTP/2) is served from certificates loaded at run time; usage is the HTTP bytes each
client sent and received."""

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest

from gateway.certificates import Certificates
from gateway.certs import CertificateError, CertStore, LocalCA
from strata.shared_certificates import SharedCertificates
from tenants import db
from tenants.routes import RouteSpec
from tenants.secrets import SecretBox
from tests.gateway.backend import QuietServer, start_backend
from tests.gateway.conftest import RunningGateway, route, start_gateway, stop_gateway

LOAD_THREADS = 4


class Load:
    """Keep-alive clients requesting one app until stopped; every answer but a 200 from a backend is a failure."""

    def __init__(self, url: str, host: str, *, verify: ssl.SSLContext | bool = True, sni: str | None = None) -> None:
        self.url, self.host, self.verify, self.sni = url, host, verify, sni
        self.answers: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(LOAD_THREADS)]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        extensions = {"sni_hostname": self.sni} if self.sni else {}
        with httpx.Client(verify=self.verify, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    answer = client.get(self.url, headers={"Host": self.host}, extensions=extensions)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code} {answer.text[:80]}")
                else:
                    self.answers[answer.json()["name"]] += 1


@pytest.fixture
def front(tmp_path: Path) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path)
    yield running
    stop_gateway(running)


@pytest.fixture(scope="module")
def three() -> Iterator[list[str]]:
    servers = [start_backend(name) for name in ("a", "b", "c")]
    yield [address for _, address in servers]
    for server, _ in servers:
        server.shutdown()


def test_reloads_for_new_apps_fail_no_request_under_load(front: RunningGateway, three: list[str]) -> None:
    front.apply(route("web", "acme", three[0]))
    with Load(front.url, "web.acme.localhost") as load:
        for index in range(5):  # each new app's backend is a structural change: a reload
            time.sleep(0.3)
            front.apply(route("web", "acme", three[0]), *(route(f"app{i}", "acme", three[1]) for i in range(index + 1)))
        time.sleep(0.3)
    assert load.failures == []
    assert sum(load.answers.values()) > 100
    processes = front.run(front.front.haproxy._processes())
    assert "6 [failed: 0]" in processes.split("\n")[1]  # the master: one reload per new app, none failed


def test_a_rolling_change_of_instances_fails_no_request(front: RunningGateway, three: list[str]) -> None:
    a, b, c = three
    front.apply(route("web", "acme", a))
    with Load(front.url, "web.acme.localhost") as load:
        for before, after in ((a, b), (b, c), (c, a)):
            time.sleep(0.2)
            front.apply(route("web", "acme", before, after))  # the new instance is ready...
            time.sleep(0.2)
            front.apply(route("web", "acme", after))  # ...the old one leaves, and its requests finish
            assert front.run(front.front.drain(before)) is True
    assert load.failures == []
    assert set(load.answers) == {"a", "b", "c"}


def test_a_new_controller_adopts_the_haproxy_left_serving(tmp_path: Path, three: list[str]) -> None:
    first = start_gateway(tmp_path)
    first.apply(route("web", "acme", three[0]))
    pid = first.front.haproxy.pid()
    with Load(first.url, "web.acme.localhost") as load:
        first.run(first.front.close())  # the daemon stops (SIGTERM): HAProxy keeps serving
        time.sleep(0.5)
        second = start_gateway(tmp_path, listeners=(first.address, first.https, first.admin))
        time.sleep(0.5)
    try:
        assert load.failures == []
        assert second.front.haproxy.pid() == pid  # the same master, reloaded: nothing was started anew
        assert httpx.get(second.url, headers={"Host": "web.acme.localhost"}).json()["name"] == "a"
        second.apply(route("web", "acme", three[1]))
        assert httpx.get(second.url, headers={"Host": "web.acme.localhost"}).json()["name"] == "b"
    finally:
        stop_gateway(second)
        first.loop.call_soon_threadsafe(first.loop.stop)


def kill_and_wait_for(front: RunningGateway, name: str) -> None:
    """Kill HAProxy, and wait until the one started again answers from the backend `name`."""
    pid = front.front.haproxy.pid()
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)  # master and workers: its own session
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if httpx.get(front.url, headers={"Host": "web.acme.localhost"}).json()["name"] == name:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        pytest.fail("HAProxy was not started again within 10 s")
    assert front.front.haproxy.pid() not in (None, pid)


def test_a_dead_haproxy_is_started_again_with_its_routes(front: RunningGateway, three: list[str]) -> None:
    front.apply(route("web", "acme", three[0]))
    kill_and_wait_for(front, "a")


def test_servers_changed_at_run_time_are_in_the_configuration_haproxy_starts_again_from(
    front: RunningGateway, three: list[str]
) -> None:
    a, b, c = three
    front.apply(route("web", "acme", a))
    front.apply(route("web", "acme", b, c))  # servers only: HAProxy parsed them as they came; the file is not checked
    assert front.run(front.front.drain(a)) is True
    kill_and_wait_for(front, "b")
    names = {httpx.get(front.url, headers={"Host": "web.acme.localhost"}).json()["name"] for _ in range(10)}
    assert names == {"b", "c"}


# HTTPS


def curl(front: RunningGateway, host: str, ca: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    port = front.https[1]
    return subprocess.run(
        ["curl", "-sS", "--max-time", "5", "--cacert", str(ca), "--resolve", f"{host}:{port}:127.0.0.1", *flags,
         "-w", "\\n%{http_code} %{http_version}", f"https://{host}:{port}/"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.fixture
def https(tmp_path: Path, front: RunningGateway) -> Iterator[tuple[Certificates, Path]]:
    """Certificates from a local CA kept by a running `Certificates`, and the CA's file for clients."""
    engine = db.open_engine(f"sqlite:///{tmp_path / 'strata.db'}")
    certificates = Certificates(
        SharedCertificates(engine, SecretBox(tmp_path / "secret.key"), "a"),
        CertStore(tmp_path / "certs"),
        LocalCA(tmp_path / "ca"),
        front.front.serve_certificate,
        front.front.unserve_certificate,
    )
    running = asyncio.run_coroutine_threadsafe(certificates.run(), front.loop)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(certificates.local_ca.certificate_pem())
    yield certificates, ca
    running.cancel()


def want(front: RunningGateway, certificates: Certificates, ca: Path, *hostnames: str) -> float:
    """Ask for certificates for `hostnames` (on the loop's thread); the seconds until the first is served."""
    started = time.monotonic()
    front.loop.call_soon_threadsafe(certificates.want, hostnames)
    while curl(front, hostnames[0], ca).returncode != 0 and time.monotonic() - started < 10:
        time.sleep(0.02)
    return time.monotonic() - started


def test_an_app_is_served_over_https_by_sni_with_the_local_ca_on_http1_and_http2(
    front: RunningGateway, three: list[str], https: tuple[Certificates, Path]
) -> None:
    certificates, ca = https
    routes = [route("web", "acme", three[0], hostnames=("shop.example.localhost",)), route("api", "acme", three[1])]
    front.apply(*routes)
    assert want(front, certificates, ca, *sorted(front.front.hostnames(routes), reverse=True)) < 5
    for flag, version in (("--http1.1", "1.1"), ("--http2", "2")):
        answer = curl(front, "web.acme.localhost", ca, flag)
        assert answer.returncode == 0 and answer.stdout.endswith(f"200 {version}"), answer
    assert '"a"' in curl(front, "shop.example.localhost", ca).stdout  # an extra hostname: its own certificate
    assert '"b"' in curl(front, "api.acme.localhost", ca).stdout
    headers = curl(front, "web.acme.localhost", ca, "-o", "/dev/null", "-D", "-").stdout.lower()
    assert "strict-transport-security" not in headers  # only for apps that ask for it
    # a name with no certificate gets no handshake at all: never a default or another app's certificate
    unknown = curl(front, "nothing.acme.localhost", ca, "-k")
    assert unknown.returncode == 35 and "unrecognized name" in unknown.stderr
    stored = {s.hostname: s for s in certificates.store.all()}
    assert set(stored) == {"web.acme.localhost", "shop.example.localhost", "api.acme.localhost"}
    assert all(s.source == "local" and s.path.stat().st_mode & 0o777 == 0o600 for s in stored.values())


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")  # tried, refused
def test_only_tls_12_and_13_with_modern_ciphers(
    front: RunningGateway, three: list[str], https: tuple[Certificates, Path]
) -> None:
    certificates, ca = https
    front.apply(route("web", "acme", three[0]))
    assert want(front, certificates, ca, "web.acme.localhost") < 5
    for version, works in ((ssl.TLSVersion.TLSv1_1, False), (ssl.TLSVersion.TLSv1_2, True),
                           (ssl.TLSVersion.TLSv1_3, True)):  # fmt: skip
        context = ssl.create_default_context(cafile=str(ca))
        context.minimum_version = context.maximum_version = version
        if version == ssl.TLSVersion.TLSv1_1:
            context.set_ciphers("ALL:@SECLEVEL=0")
        try:
            with context.wrap_socket(
                socket.create_connection(front.https), server_hostname="web.acme.localhost"
            ) as sock:
                negotiated = sock.version(), sock.cipher()
        except (ssl.SSLError, OSError):
            negotiated = None
        assert (negotiated is not None) == works, (version, negotiated)
        if negotiated is not None:
            assert "GCM" in negotiated[1][0] or "CHACHA20" in negotiated[1][0]


def test_https_serves_a_rolling_change_without_failing_a_request(
    front: RunningGateway, three: list[str], https: tuple[Certificates, Path]
) -> None:
    certificates, ca = https
    a, b, _ = three
    front.apply(route("web", "acme", a))
    assert want(front, certificates, ca, "web.acme.localhost") < 5
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False  # the load connects to 127.0.0.1 with SNI from the Host header
    url = f"https://127.0.0.1:{front.https[1]}/"
    with Load(url, "web.acme.localhost", verify=context, sni="web.acme.localhost") as load:
        time.sleep(0.3)
        front.apply(route("web", "acme", a, b))
        time.sleep(0.3)
        front.apply(route("web", "acme", b))
        assert front.run(front.front.drain(a)) is True
        time.sleep(0.3)
    assert load.failures == []
    assert load.answers["a"] > 0 and load.answers["b"] > 0


def test_an_app_may_redirect_http_to_https_and_send_hsts(
    front: RunningGateway, three: list[str], https: tuple[Certificates, Path]
) -> None:
    certificates, ca = https
    secure = RouteSpec("acme", "web", (), (three[0],), 10_000, 10_000, 1 << 20, redirect_https=True, hsts=True)
    front.apply(secure, route("api", "acme", three[1]))
    assert want(front, certificates, ca, "web.acme.localhost", "api.acme.localhost") < 5
    plain = httpx.get(front.url + "/x?y=1", headers={"Host": "web.acme.localhost"})
    location = f"https://web.acme.localhost:{front.https[1]}/x?y=1"  # the HTTPS listener's port
    assert plain.status_code == 308 and plain.headers["location"] == location
    assert httpx.get(front.url, headers={"Host": "api.acme.localhost"}).status_code == 200  # another app: as it was
    headers = curl(front, "web.acme.localhost", ca, "-o", "/dev/null", "-D", "-").stdout.lower()
    assert "strict-transport-security: max-age=31536000" in headers
    headers = curl(front, "api.acme.localhost", ca, "-o", "/dev/null", "-D", "-").stdout.lower()
    assert "strict-transport-security" not in headers


PAGE = (
    b"<!doctype html><body><script>document.body.textContent = "
    b'"protocol=" + performance.getEntriesByType("navigation")[0].nextHopProtocol</script></body>'
)


class PageHandler(BaseHTTPRequestHandler):
    """An app page that shows the protocol the browser reached it with."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)


def test_a_browser_trusting_the_local_ca_loads_the_app_over_http2(
    tmp_path: Path, front: RunningGateway, https: tuple[Certificates, Path]
) -> None:
    certificates, ca = https
    page = QuietServer(("127.0.0.1", 0), PageHandler)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    try:
        front.apply(route("web", "acme", f"127.0.0.1:{page.server_address[1]}"))
        assert want(front, certificates, ca, "web.acme.localhost") < 5
        url = f"https://web.acme.localhost:{front.https[1]}/"  # Chromium resolves *.localhost to loopback itself
        untrusting = chromium(tmp_path / "untrusting", url)
        assert "protocol=" not in untrusting  # a CA the browser was not told of: no page
        trusting = tmp_path / "trusting"
        nss = trusting / ".pki" / "nssdb"
        nss.mkdir(parents=True)
        subprocess.run(["certutil", "-d", f"sql:{nss}", "-N", "--empty-password"], check=True)
        subprocess.run(["certutil", "-d", f"sql:{nss}", "-A", "-n", "strata", "-t", "C,,", "-i", str(ca)], check=True)
        assert "protocol=h2" in chromium(trusting, url)
    finally:
        page.shutdown()


def chromium(home: Path, url: str) -> str:
    """The page's DOM after its scripts ran, as headless Chromium with `home` (its NSS trust store) saw it."""
    home.mkdir(parents=True, exist_ok=True)
    answer = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", url],
        capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(home)}, check=False,
    )  # fmt: skip
    return answer.stdout


def test_an_operators_certificate_replaces_the_platforms_and_a_real_domain_needs_acme(
    tmp_path: Path, front: RunningGateway, three: list[str], https: tuple[Certificates, Path]
) -> None:
    certificates, ca = https
    routes = [route("web", "acme", three[0], hostnames=("shop.example.com",))]
    front.apply(*routes)
    assert want(front, certificates, ca, *sorted(front.front.hostnames(routes), reverse=True)) < 5
    entries = {entry.hostname: entry for entry in front.run(certificates.entries())}
    refused = entries["shop.example.com"]  # no ACME server: the local CA signs .localhost only
    assert refused.fingerprint is None and "no ACME server" in (refused.last_error or "")

    operators = LocalCA(tmp_path / "operators-ca")  # say, the company's own CA
    issued = operators.issue(["web.acme.localhost"])
    stored = front.run(certificates.install("web.acme.localhost", issued.chain_pem, issued.key_pem))
    assert stored.source == "operator"
    (tmp_path / "operators.pem").write_bytes(operators.certificate_pem())
    assert curl(front, "web.acme.localhost", tmp_path / "operators.pem").returncode == 0  # served at once
    assert curl(front, "web.acme.localhost", ca).returncode != 0  # the platform's is no longer served
    entries = {entry.hostname: entry for entry in front.run(certificates.entries())}
    sources = [(e.hostname, e.source) for e in entries.values()]
    assert sources == [("shop.example.com", None), ("web.acme.localhost", "operator")]  # shop's error; the operator's
    wrong = operators.issue(["other.acme.localhost"])
    with pytest.raises(CertificateError, match="not web.acme.localhost"):
        front.run(certificates.install("web.acme.localhost", wrong.chain_pem, wrong.key_pem))


# usage metering

Counts = tuple[int, int, int]  # requests, bytes read from the client, bytes sent to it


class Wire:
    """An HTTP/1.1 client on one connection, counting what crosses its socket for each exchange."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer, self.received, self.chunk_lines = sock, b"", 0, 0

    def exchange(self, head: bytes, body: bytes = b"", chunks: tuple[bytes, ...] = ()) -> tuple[int, int, int]:
        """Send a request (with a body of `chunks`, chunked, if any) and read its whole answer: its status, and the
        bytes sent and received for it less each data chunk's size line and CRLF, which the meter does not count."""
        unmetered_in = sum(len(b"%x\r\n\r\n" % len(chunk)) for chunk in chunks)
        if chunks:
            body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
        self.sock.sendall(head + body)
        self.received = unmetered_out = status = 0
        while status < 200:  # a 100 Continue first, if it expects one
            status, fields = int(self._line().split()[1]), {}
            while line := self._line().strip():
                name, _, value = line.partition(b":")
                fields[name.strip().lower()] = value.strip()
        if fields.get(b"transfer-encoding") == b"chunked":
            while size := int(self._line().split(b";")[0], 16):
                unmetered_out += len(b"%x\r\n\r\n" % size)
                self._take(size + 2)
            self._line()  # no trailers: the blank line
        elif head.startswith(b"HEAD"):
            pass
        elif b"content-length" in fields:
            self._take(int(fields[b"content-length"]))
        else:  # to the end of the connection
            while data := self.sock.recv(65536):
                self.buffer += data
            self._take(len(self.buffer))
        self.chunk_lines += unmetered_in + unmetered_out
        return status, len(head) + len(body) - unmetered_in, self.received - unmetered_out

    def _line(self) -> bytes:
        while b"\n" not in self.buffer:
            self._more()
        line, _, self.buffer = self.buffer.partition(b"\n")
        self.received += len(line) + 1
        return line

    def _take(self, size: int) -> None:
        while len(self.buffer) < size:
            self._more()
        self.buffer = self.buffer[size:]
        self.received += size

    def _more(self) -> None:
        data = self.sock.recv(65536)
        assert data, "the front door closed the connection"
        self.buffer += data


def request(method: str, host: str, path: str = "/", fields: bytes = b"", version: str = "1.1") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: {host}\r\nUser-Agent: wire/1\r\n".encode() + fields + b"\r\n"


def metered(front: RunningGateway, requests: int) -> dict[tuple[str, str], Counts]:
    """What the front door counted for each app, once it has `requests` (it reads its log once a second)."""
    usage: dict[tuple[str, str], Counts] = {}

    async def take() -> None:
        for key, counts in front.front.take_usage().items():
            usage[key] = added(usage.get(key, (0, 0, 0)), counts)

    deadline = time.monotonic() + 10
    while sum(counts[0] for counts in usage.values()) < requests and time.monotonic() < deadline:
        front.run(take())
        time.sleep(0.2)
    time.sleep(1.2)  # and none beyond them
    front.run(take())
    return usage


def added(a: Counts, b: Counts) -> Counts:
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def test_usage_is_the_http_bytes_each_client_sent_and_received_over_http_and_inside_tls(
    front: RunningGateway, three: list[str], https: tuple[Certificates, Path]
) -> None:
    """Keep-alive connections, one over HTTP and one over TLS, carry GETs, a HEAD, a body with a Content-Length
    and a chunked one, one sent after a 100 Continue, a chunked answer (then an HTTP/1.0 request, an answer of no
    length, each alone on a connection HAProxy closes after it), answers of the front door's own for an app
    (a 413, the activator's 503 for an app with no instance, an HSTS header added) and for none (a 404 for an
    unknown host, a 308 to HTTPS: no one's usage). Each app is metered every byte its requests and answers took
    on the client's socket (inside TLS), but for each data chunk's size line and CRLF, which HAProxy 2.6 keeps
    from no one."""
    certificates, ca = https
    secure = RouteSpec("shop", "web", (), (three[0],), 10_000, 10_000, 4096, redirect_https=True, hsts=True)
    front.apply(secure, route("api", "acme", three[1]), route("idle", "acme"))
    assert want(front, certificates, ca, "web.shop.localhost", "api.acme.localhost") < 5
    api, web, idle = "api.acme.localhost", "web.shop.localhost", "idle.acme.localhost"
    metered(front, 0)  # the requests that found the certificates served: not this test's
    chunked = b"Transfer-Encoding: chunked\r\n"
    exchanges = [
        *[(api, request("GET", api))] * 3,
        (api, request("GET", api, "/x?y=1", b"Accept: */*\r\nX-Trace: a, b\r\n")),
        (api, request("HEAD", api)),
        (api, request("POST", api, fields=b"Content-Length: 3000\r\n"), b"x" * 3000),
        (api, request("POST", api, fields=chunked), b"", (b"a" * 700, b"b" * 70, b"c")),
        (api, request("PUT", api, fields=b"Content-Length: 2000\r\nExpect: 100-continue\r\n"), b"y" * 2000),
        (api, request("GET", api, "/chunked")),
        (idle, request("GET", idle)),
        (None, request("GET", "nowhere.localhost")),
        (web, request("GET", web)),  # over HTTP a 308, over TLS with HSTS
        (web, request("POST", web, fields=b"Content-Length: 5000\r\n"), b"x" * 5000),  # over TLS a 413: the last
    ]
    truth: dict[tuple[str, str], Counts] = {}
    statuses: list[int] = []
    chunk_lines = 0
    context = ssl.create_default_context(cafile=str(ca))
    for over_tls in (False, True):
        sock = socket.create_connection(front.https if over_tls else front.address, timeout=5)
        if over_tls:
            sock = context.wrap_socket(sock, server_hostname=api)
        with sock:
            wire = Wire(sock)
            for host, *sent in exchanges:
                status, read, written = wire.exchange(*sent)  # type: ignore[arg-type]
                statuses.append(status)
                if host is not None and status != 308:
                    app, tenant, _ = host.split(".")
                    key = (tenant, app)
                    truth[key] = added(truth.get(key, (0, 0, 0)), (1, read, written))
            chunk_lines += wire.chunk_lines

    for last in (request("GET", api, version="1.0"), request("GET", api, "/unsized")):  # then HAProxy closes
        with socket.create_connection(front.address, timeout=5) as sock:
            status, read, written = Wire(sock).exchange(last)
        statuses.append(status)
        truth[("acme", "api")] = added(truth[("acme", "api")], (1, read, written))

    usage = metered(front, sum(counts[0] for counts in truth.values()))
    print(f"\nmetered {usage}\nthe clients' {truth}\n({chunk_lines} bytes of chunk size lines not counted)")
    assert statuses == [200] * 9 + [503, 404, 308, 308] + [200] * 9 + [503, 404, 200, 413, 200, 200]
    assert usage == truth


def test_a_connection_header_is_what_of_a_request_and_its_answer_is_not_metered(
    front: RunningGateway, three: list[str]
) -> None:
    """HAProxy 2.6 drops a Connection header's close as it reads it, and writes its own on the answer: neither
    is in its counts, so each is missing from the usage: 19 bytes each way here ("connection: close" CRLF)."""
    front.apply(route("api", "acme", three[1]))
    metered(front, 0)
    with socket.create_connection(front.address, timeout=5) as sock:
        status, read, written = Wire(sock).exchange(
            request("GET", "api.acme.localhost", fields=b"Connection: close\r\n")
        )
    assert status == 200
    assert metered(front, 1) == {("acme", "api"): (1, read - 19, written - 19)}
