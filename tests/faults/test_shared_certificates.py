"""Two daemons on one PostgreSQL database, with a real ACME server (pebble) validating at one daemon's front door:
one order per name serves both doors (the same certificate, as its fingerprint shows), both doors present the
`.localhost` certificate of the platform's one local CA, and an operator's certificate installed through one
daemon is served by the other's door too."""

import subprocess
import time
from pathlib import Path

from gateway.certs import LocalCA
from tenants.schemas import AppSpec, CertificateUpload, TenantCreate
from tests.containers import wait_for
from tests.harness import Daemon, free_port
from tests.pair import daemon_pair, https_answer
from tests.pebble import start_pebble
from tests.postgres import Postgres

HELLO = AppSpec(image="strata/hello", replicas=1, health_path="/healthz", memory_mib=64)
SHOP, LOCAL = "shop.example.com", "web.acme.localhost"
SECOND_ORDER_SECONDS = 5  # a second order, were there one, would be placed by then (the doors read every second)


def test_one_order_for_a_name_serves_every_daemons_front_door(postgres: Postgres, tmp_path: Path) -> None:
    gateway = f"127.0.0.1:{free_port()}"
    with start_pebble(tmp_path / "pebble", int(gateway.rpartition(":")[2])) as pebble:
        acme = {"STRATA_ACME_DIRECTORY": pebble.directory_url, "STRATA_ACME_CA_BUNDLE": str(pebble.ca_bundle)}
        with daemon_pair(postgres, tmp_path, acme, gateway=gateway) as pair:
            orders = pebble.orders_placed()
            with pair.b.operator() as api:
                api.bootstrap_images()
                api.create_tenant(TenantCreate(name="acme"))
                api.deploy("acme", "web", HELLO.model_copy(update={"hostnames": [SHOP]}))
            root = tmp_path / "pebble-root.pem"
            root.write_bytes(pebble.root_pem())
            for door in (pair.a, pair.b):
                answer = wait_for(
                    lambda door=door: https_answer(door, SHOP, root), timeout=90, what=f"{door.home.name} on HTTPS"
                )
                assert "revision=1" in answer, answer
            time.sleep(SECOND_ORDER_SECONDS)
            assert pebble.orders_placed() == orders + 1  # one order for the name, whatever the number of doors
            served = {door.home.name: _fingerprint(door, SHOP) for door in (pair.a, pair.b)}
            assert served["a"] is not None and served["a"] == served["b"], served

            local = {
                door.home.name: wait_for(lambda d=door: _fingerprint(d, LOCAL), what=LOCAL) for door in (pair.a, pair.b)
            }
            assert local["a"] == local["b"], local  # one certificate, of the platform's one local CA
            with pair.a.operator() as first, pair.b.operator() as second:
                assert first.local_ca() == second.local_ca()

            operators = LocalCA(tmp_path / "operators-ca").issue([SHOP])
            upload = CertificateUpload(certificate_pem=operators.chain_pem.decode(), key_pem=operators.key_pem.decode())
            with pair.b.operator() as api:
                api.add_certificate(SHOP, upload)
            wanted = _digest(operators.chain_pem)
            wait_for(lambda: _fingerprint(pair.a, SHOP) == wanted, timeout=10, what="the operator's certificate at a")
            assert _fingerprint(pair.b, SHOP) == wanted


def _fingerprint(daemon: Daemon, hostname: str) -> str | None:
    """The SHA-256 fingerprint of the certificate the daemon's door presents for `hostname`; None if none."""
    shown = subprocess.run(
        ["openssl", "s_client", "-connect", daemon.https, "-servername", hostname],
        input="", capture_output=True, text=True, timeout=10, check=False,
    ).stdout  # fmt: skip
    return _digest(shown.encode())


def _digest(pem: bytes) -> str | None:
    done = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256"], input=pem, capture_output=True, check=False
    )
    return done.stdout.decode().strip() if done.returncode == 0 else None
