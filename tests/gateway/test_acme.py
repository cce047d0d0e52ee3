"""Certificates ordered from a real ACME server (pebble), HTTP-01 challenges answered by a test board."""

import asyncio
import re
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.acme import AcmeError, AcmeIssuer
from tests.pebble import Pebble, free_port, start_pebble

PREFIX = "/.well-known/acme-challenge/"


class Board:
    """A ChallengeBoard: a dict, served over HTTP on loopback where pebble validates."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.published: list[str] = []
        self.withdrawn: list[str] = []

    async def publish(self, token: str, key_authorization: str) -> None:
        self.published.append(token)
        self.tokens[token] = key_authorization

    async def withdraw(self, token: str) -> None:
        self.withdrawn.append(token)
        self.tokens.pop(token, None)


class DeafBoard(Board):
    """Takes the challenges, and publishes nothing."""

    async def publish(self, token: str, key_authorization: str) -> None:
        self.published.append(token)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[int, list[Board]]]:
    """An HTTP server answering challenges from whichever board is current (the list's last)."""
    boards: list[Board] = [Board()]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            answer = boards[-1].tokens.get(self.path.removeprefix(PREFIX)) if self.path.startswith(PREFIX) else None
            body = (answer or "not found").encode()
            self.send_response(200 if answer else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], boards
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory, served: tuple[int, list[Board]]) -> Iterator[Pebble]:
    running = start_pebble(tmp_path_factory.mktemp("pebble"), served[0])
    yield running
    running.stop()


@pytest.fixture
def board(served: tuple[int, list[Board]]) -> Board:
    served[1].append(Board())
    return served[1][-1]


def issuer(pebble: Pebble, key: Path, board: Board) -> AcmeIssuer:
    return AcmeIssuer(pebble.directory_url, key, board, email="ops@acme.example", ca_bundle=pebble.ca_bundle)


def verify(pebble: Pebble, fullchain: bytes, directory: Path) -> x509.Certificate:
    """The chain checked up to pebble's root by openssl; returns the leaf."""
    chain = x509.load_pem_x509_certificates(fullchain)
    (directory / "root.pem").write_bytes(pebble.root_pem())
    (directory / "leaf.pem").write_bytes(chain[0].public_bytes(serialization.Encoding.PEM))
    (directory / "chain.pem").write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain[1:]))
    check = subprocess.run(
        ["openssl", "verify", "-CAfile", "root.pem", "-untrusted", "chain.pem", "leaf.pem"],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    return chain[0]


def sans(certificate: x509.Certificate) -> set[str]:
    return set(
        certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
    )


def test_a_certificate_for_the_names_asked_chained_to_the_root(pebble: Pebble, board: Board, tmp_path: Path) -> None:
    names = ["web.acme.example", "www.acme.example"]
    started = time.monotonic()
    fullchain, key = asyncio.run(issuer(pebble, tmp_path / "account.pem", board).order(names))
    elapsed = time.monotonic() - started
    assert elapsed <= 5, f"{elapsed:.1f} s to a certificate"
    leaf = verify(pebble, fullchain, tmp_path)
    assert sans(leaf) == set(names)
    assert key.startswith(b"-----BEGIN PRIVATE KEY-----")
    private = serialization.load_pem_private_key(key, password=None)
    assert private.public_key() == leaf.public_key()
    assert board.tokens == {} and len(board.published) == 2 and sorted(board.withdrawn) == sorted(board.published)
    assert stat.S_IMODE((tmp_path / "account.pem").stat().st_mode) == 0o600


def accounts(pebble: Pebble) -> int:
    return len(re.findall(r"There are now \d+ accounts", pebble.log.read_text()))


def test_a_restart_keeps_the_account(pebble: Pebble, board: Board, tmp_path: Path) -> None:
    first = issuer(pebble, tmp_path / "account.pem", board)
    asyncio.run(first.order(["one.acme.example"]))
    created, orders = accounts(pebble), pebble.orders_placed()
    assert created >= 1 and orders >= 1
    second = issuer(pebble, tmp_path / "account.pem", board)
    fullchain, _ = asyncio.run(second.order(["two.acme.example"]))
    assert sans(verify(pebble, fullchain, tmp_path)) == {"two.acme.example"}
    assert second.account_url is not None and second.account_url == first.account_url
    assert accounts(pebble) == created, "a second account was registered"
    assert pebble.orders_placed() == orders + 1


def test_an_unanswered_challenge_fails_and_is_withdrawn(
    pebble: Pebble, served: tuple[int, list[Board]], tmp_path: Path
) -> None:
    deaf = DeafBoard()
    served[1].append(deaf)
    with pytest.raises(AcmeError) as failure:
        asyncio.run(issuer(pebble, tmp_path / "account.pem", deaf).order(["lost.acme.example"]))
    message = str(failure.value)
    assert message.startswith("acme: lost.acme.example: urn:ietf:params:acme:error:"), message
    assert "PRIVATE KEY" not in message and len(message) < 500
    assert len(deaf.published) == 1 and deaf.withdrawn == deaf.published
