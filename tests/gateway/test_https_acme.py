"""HTTPS for a real domain: certificates ordered from a real ACME server (pebble, offline: its DNS answers
127.0.0.1 for every name and its HTTP-01 validation reaches the front door), the challenges answered by HAProxy
from its map, certificates loaded without a reload, renewed when a third of their life is left (an injected
clock), and none ordered again by a new controller over the same store (a daemon restart)."""

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from gateway.acme import AcmeIssuer
from gateway.certificates import Certificates
from gateway.certs import CertStore, LocalCA
from strata.shared_certificates import SharedCertificates
from tenants import db
from tenants.secrets import SecretBox
from tests.gateway.backend import start_backend
from tests.gateway.conftest import RunningGateway, route, start_gateway, stop_gateway
from tests.harness import free_port
from tests.pebble import Pebble, start_pebble

HOST = "shop.example.com"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RunningGateway, Pebble, str]]:
    """A front door serving `shop.example.com` over HTTP, and a pebble validating against it."""
    front = start_gateway(tmp_path / "door")
    backend, address = start_backend("shop")
    pebble = start_pebble(tmp_path / "pebble", front.address[1])
    front.apply(route("web", "acme", address, hostnames=(HOST,)))
    yield front, pebble, address
    pebble.stop()
    stop_gateway(front)
    backend.shutdown()


def certificates(front: RunningGateway, pebble: Pebble, home: Path, clock: Clock) -> Certificates:
    """A daemon's controller with its home under `home` (its database there: the ledger of certificates)."""
    issuer = AcmeIssuer(pebble.directory_url, home / "account.key", front.front, ca_bundle=pebble.ca_bundle)
    ledger = SharedCertificates(db.open_engine(f"sqlite:///{home / 'strata.db'}"), SecretBox(home / "key"), "a")
    return Certificates(
        ledger, CertStore(home / "certs"), LocalCA(home / "ca"), front.front.serve_certificate,
        front.front.unserve_certificate, issuer, clock=clock,
    )  # fmt: skip


def fetch(front: RunningGateway, root: Path) -> subprocess.CompletedProcess[str]:
    """GET https://shop.example.com/ through the front door, trusting pebble's root only."""
    port = front.https[1]
    return subprocess.run(
        ["curl", "-sS", "--max-time", "5", "--cacert", str(root), "--resolve", f"{HOST}:{port}:127.0.0.1",
         "-w", "\n%{http_version}", f"https://{HOST}:{port}/"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def serial(front: RunningGateway) -> str:
    output = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{front.https[1]}", "-servername", HOST],
        input="", capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    return subprocess.run(
        ["openssl", "x509", "-noout", "-serial"], input=output, capture_output=True, text=True, check=True
    ).stdout


def test_a_hostname_gets_a_certificate_from_acme_renewed_and_not_ordered_again(
    served: tuple[RunningGateway, Pebble, str], tmp_path: Path
) -> None:
    front, pebble, _ = served
    root = tmp_path / "root.pem"
    root.write_bytes(pebble.root_pem())
    clock, home = Clock(), tmp_path / "home"
    home.mkdir()
    first = certificates(front, pebble, home, clock)
    assert first.source_for(HOST) == "acme" and first.source_for("web.acme.localhost") == "local"
    orders = pebble.orders_placed()

    started = time.monotonic()
    first.want([HOST, "web.acme.localhost"])
    front.run(first.reconcile())
    elapsed = time.monotonic() - started
    assert elapsed <= 5, f"{elapsed:.1f} s to a certificate"
    answer = fetch(front, root)
    assert answer.returncode == 0 and answer.stdout.endswith("\n2") and '"shop"' in answer.stdout, answer
    assert pebble.orders_placed() == orders + 1  # the .localhost name came from the local CA
    assert front.front._state.maps["challenges"] == {}  # every challenge withdrawn
    stored = first.store.get(HOST)
    assert stored is not None and stored.source == "acme" and stored.path.stat().st_mode & 0o777 == 0o600
    before = serial(front)

    clock.now = stored.certificate.renew_at() - timedelta(minutes=1)  # type: ignore[union-attr]
    front.run(first.reconcile())
    assert pebble.orders_placed() == orders + 1  # not due yet
    clock.now += timedelta(minutes=2)
    front.run(first.reconcile())
    assert pebble.orders_placed() == orders + 2  # due: renewed, and served without a reload
    assert serial(front) != before and fetch(front, root).returncode == 0

    clock.now = datetime.now(UTC)  # the daemon restarted, today: same store, same account
    again = certificates(front, pebble, home, clock)
    again.want([HOST, "web.acme.localhost"])
    front.run(again.reconcile())
    assert pebble.orders_placed() == orders + 2


def test_a_failed_order_is_shown_and_the_app_keeps_serving_over_http(
    served: tuple[RunningGateway, Pebble, str], tmp_path: Path
) -> None:
    front, _, _ = served
    with start_pebble(tmp_path / "unreachable", free_port()) as pebble:  # it validates where nothing answers
        clock, home = Clock(), tmp_path / "home"
        home.mkdir()
        failing = certificates(front, pebble, home, clock)
        failing.want([HOST])
        front.run(failing.reconcile())
        [entry] = front.run(failing.entries())
        assert entry.hostname == HOST and entry.fingerprint is None and failing.store.get(HOST) is None
        assert entry.last_error is not None and HOST in entry.last_error and "connection" in entry.last_error
        answer = httpx.get(front.url, headers={"Host": HOST})
        assert answer.status_code == 200 and answer.json()["name"] == "shop"  # HTTP serves on
        orders = pebble.orders_placed()
        front.run(failing.reconcile())
        assert pebble.orders_placed() == orders  # tried again after a pause, not at once
        clock.now += timedelta(minutes=2)
        front.run(failing.reconcile())
        assert pebble.orders_placed() == orders + 1
