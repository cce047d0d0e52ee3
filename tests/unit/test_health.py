"""Health checks against real servers on loopback."""

import asyncio
import http.server
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from hosting.paas.health import CLOSED, OK, HealthChecker
from tenants.enums import AppKind


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        status = {"/healthz": 200, "/moved": 302, "/sick": 503}.get(self.path, 404)
        self.send_response(status)
        self.send_header("Set-Cookie", "session=secret; Path=/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def check(endpoint: str, path: str | None) -> tuple[str, int]:
    async def run() -> tuple[str, int]:
        checker = HealthChecker(timeout=1)
        try:
            return await checker.check(endpoint, path), len(checker._http.cookies.jar)
        finally:
            await checker.close()

    return asyncio.run(run())


@pytest.mark.parametrize("path, result", [("/healthz", OK), ("/moved", OK), ("/sick", "HTTP 503"), ("/x", "HTTP 404")])
def test_http_checks_pass_on_2xx_and_3xx_only(server: str, path: str, result: str) -> None:
    assert check(server, path)[0] == result


def test_no_cookie_is_kept_between_checks(server: str) -> None:
    assert check(server, "/healthz")[1] == 0


def test_without_a_path_a_tcp_connect_is_the_check(server: str) -> None:
    assert check(server, None)[0] == OK


def test_a_closed_port_is_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening
        assert check(f"127.0.0.1:{port}", "/healthz")[0] == "refused"
        assert check(f"127.0.0.1:{port}", None)[0] == "refused"


@pytest.mark.parametrize("speaks_first", [False, True])
def test_a_tcp_check_passes_when_the_connection_stays_open_or_the_app_speaks(speaks_first: bool) -> None:
    accepted: list[socket.socket] = []  # held open until the check is over

    def accept(listener: socket.socket) -> None:
        accepted.append(listener.accept()[0])
        if speaks_first:
            accepted[0].sendall(b"SSH-2.0-x\r\n")

    with socket.create_server(("127.0.0.1", 0)) as listener:
        threading.Thread(target=accept, args=(listener,), daemon=True).start()
        assert check(f"127.0.0.1:{listener.getsockname()[1]}", None)[0] == OK


@pytest.mark.parametrize("reset", [False, True])
def test_a_connection_accepted_and_closed_at_once_fails_the_tcp_check(reset: bool) -> None:
    """What docker-proxy does when nothing listens in the container: accept, then close (or reset)."""

    def accept_and_close(listener: socket.socket) -> None:
        connection, _ = listener.accept()
        if reset:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        connection.close()

    with socket.create_server(("127.0.0.1", 0)) as listener:
        threading.Thread(target=accept_and_close, args=(listener,), daemon=True).start()
        assert check(f"127.0.0.1:{listener.getsockname()[1]}", None)[0] == CLOSED


def serve_once(answer: bytes) -> tuple[socket.socket, list[bytes]]:
    """A listener that reads what the first client sends and answers `answer` (a PostgreSQL server, say)."""
    listener, received = socket.create_server(("127.0.0.1", 0)), []

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            received.append(connection.recv(512))
            connection.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return listener, received


def postgres_check(answer: bytes) -> tuple[str, list[bytes]]:
    listener, received = serve_once(answer)
    with listener:

        async def run() -> str:
            checker = HealthChecker(timeout=1)
            try:
                return await checker.check(f"127.0.0.1:{listener.getsockname()[1]}", None, AppKind.POSTGRES)
            finally:
                await checker.close()

        return asyncio.run(run()), received


def test_a_postgres_asking_for_a_password_takes_sessions() -> None:
    result, [startup] = postgres_check(b"R" + struct.pack("!ii", 23, 10) + b"SCRAM-SHA-256\x00\x00")
    assert result == OK
    assert struct.unpack("!ii", startup[:8]) == (len(startup), 196608) and b"user\x00" in startup


def test_a_postgres_replaying_its_wal_is_not_ready_and_says_so() -> None:
    message = b"SFATAL\x00C57P03\x00Mthe database system is not yet accepting connections\x00\x00"
    result, _ = postgres_check(b"E" + struct.pack("!i", 4 + len(message)) + message)
    assert result == "PostgreSQL takes no session yet: the database system is not yet accepting connections"
