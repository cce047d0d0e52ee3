"""Certificates kept in the database for every daemon's front door: claims (one daemon orders a name at a time),
sealed keys, failed orders shared, the platform's one local CA, and two controllers on one database serving the
same certificates; on SQLite and PostgreSQL."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from threading import Barrier

import pytest
from sqlalchemy import Engine, text

from gateway.certificates import Certificates
from gateway.certs import CertStore, LocalCA
from strata.shared_certificates import SharedCertificates, share_local_ca
from tenants.secrets import SecretBox

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)
SHOP = "shop.example.com"


@pytest.fixture
def box(tmp_path: Path) -> SecretBox:
    return SecretBox(tmp_path / "secret.key")


@pytest.fixture
def ca(tmp_path: Path) -> LocalCA:
    return LocalCA(tmp_path / "ca")


def test_one_daemon_at_a_time_orders_a_name_until_it_stores_fails_or_its_claim_lapses(
    engine: Engine, box: SecretBox, ca: LocalCA
) -> None:
    a, b = SharedCertificates(engine, box, "a"), SharedCertificates(engine, box, "b")
    assert a.claim(SHOP, NOW, NOW + LEASE, seen=None)
    assert not b.claim(SHOP, NOW + timedelta(minutes=9), NOW + LEASE, seen=None)  # a orders it
    assert a.claim(SHOP, NOW, NOW + LEASE, seen=None)  # a's own claim, again
    assert b.claim("other.example.com", NOW, NOW + LEASE, seen=None)  # a claim is per name
    assert b.claim(SHOP, NOW + LEASE, NOW + 2 * LEASE, seen=None)  # a died with it: it lapsed
    b.fail(SHOP, "rate limited", NOW + timedelta(minutes=1), timedelta(minutes=1))
    assert not a.claim(SHOP, NOW, NOW + LEASE, seen=None)  # the failure's pause holds for every daemon
    assert a.claim(SHOP, NOW + timedelta(minutes=1), NOW + LEASE, seen=None)  # then: the failure ended b's claim
    certificate = ca.issue([SHOP])
    assert a.put(certificate, "acme")
    assert not b.claim(SHOP, NOW, NOW + LEASE, seen=None)  # stored since b read the row: nothing to order
    assert b.claim(SHOP, NOW, NOW + LEASE, seen=certificate.fingerprint())  # so does a stored one (renewed, once)


def test_of_daemons_claiming_one_name_at_once_one_wins(engine: Engine, box: SecretBox) -> None:
    ledgers = [SharedCertificates(engine, box, f"d{n}") for n in range(8)]
    start = Barrier(len(ledgers))

    def claim(ledger: SharedCertificates) -> bool:
        start.wait()
        return ledger.claim(SHOP, NOW, NOW + LEASE, seen=None)

    with ThreadPoolExecutor(len(ledgers)) as pool:
        won = list(pool.map(claim, ledgers))
    assert won.count(True) == 1


def test_a_stored_key_is_sealed_and_comes_back_whole(engine: Engine, box: SecretBox, ca: LocalCA) -> None:
    ledger = SharedCertificates(engine, box, "a")
    certificate = ca.issue(["shop.localhost", "www.shop.localhost"])
    assert ledger.put(certificate, "local")
    with engine.connect() as connection:
        chain, sealed = connection.execute(text("SELECT chain_pem, key_sealed FROM certificate")).one()
    assert chain.encode() == certificate.chain_pem
    assert b"PRIVATE KEY" not in sealed.encode() and certificate.key_pem.decode() not in sealed
    assert SharedCertificates(engine, box, "b").certificate("shop.localhost") == certificate
    [entry] = ledger.entries()
    assert (entry.hostnames, entry.source, entry.fingerprint) == (
        certificate.hostnames,
        "local",
        certificate.fingerprint(),
    )
    assert entry.renew_at() == certificate.renew_at() and entry.covers("www.shop.localhost")


def test_a_failed_order_is_shared_and_keeps_the_certificate(engine: Engine, box: SecretBox, ca: LocalCA) -> None:
    a, b = SharedCertificates(engine, box, "a"), SharedCertificates(engine, box, "b")
    a.fail("new.example.com", "acme: connection refused", NOW + timedelta(minutes=1), timedelta(minutes=1))
    [entry] = b.entries()
    assert (entry.fingerprint, entry.last_error, entry.retry_at, entry.retry) == (
        None, "acme: connection refused", NOW + timedelta(minutes=1), timedelta(minutes=1)
    )  # fmt: skip
    certificate = ca.issue(["new.example.com"])
    a.put(certificate, "acme")
    b.fail("new.example.com", "renewal failed", NOW, timedelta(minutes=2))
    [entry] = a.entries()
    assert (entry.fingerprint, entry.last_error) == (certificate.fingerprint(), "renewal failed")
    assert a.certificate("new.example.com") == certificate


def test_a_platform_certificate_never_replaces_an_operators(engine: Engine, box: SecretBox, ca: LocalCA) -> None:
    ledger = SharedCertificates(engine, box, "a")
    operators = ca.issue(["shop.example.com"])
    assert ledger.put(operators, "operator")
    assert not ledger.put(ca.issue(["shop.example.com"]), "acme")  # ordered while the operator installed theirs
    assert ledger.certificate("shop.example.com") == operators
    assert ledger.put(ca.issue(["shop.example.com"]), "operator")  # an operator's replaces an operator's


def test_every_daemon_adopts_the_first_daemons_local_ca(engine: Engine, box: SecretBox, tmp_path: Path) -> None:
    first, second = LocalCA(tmp_path / "a" / "ca"), LocalCA(tmp_path / "b" / "ca")
    share_local_ca(engine, box, first)
    mine = second.certificate_pem()  # b had made one of its own before
    share_local_ca(engine, box, second)
    assert second.certificate_pem() == first.certificate_pem() != mine
    with engine.connect() as connection:
        sealed = connection.execute(text("SELECT key_sealed FROM local_ca")).scalar_one()
    assert "PRIVATE KEY" not in sealed


def test_two_doors_serve_the_one_certificate_one_of_them_made(engine: Engine, box: SecretBox, tmp_path: Path) -> None:
    """Two controllers on one database, as two daemons: the first signs, the second serves that same certificate;
    an operator's certificate installed at one is served by both, the platform's it covers dropped by both."""
    served: dict[str, list[str]] = {"a": [], "b": []}

    def door(name: str) -> Certificates:
        async def serve(path: Path) -> None:
            served[name].append(path.name)

        async def unserve(path: Path) -> None:
            served[name].remove(path.name)

        ca = LocalCA(tmp_path / name / "ca")
        share_local_ca(engine, box, ca)
        ledger = SharedCertificates(engine, box, name)
        return Certificates(ledger, CertStore(tmp_path / name / "certs"), ca, serve, unserve, clock=lambda: NOW)

    a, b = door("a"), door("b")
    a.want(["web.acme.localhost"])
    asyncio.run(a.reconcile())
    b.want(["web.acme.localhost"])
    asyncio.run(b.reconcile())
    [entry] = asyncio.run(b.entries())
    stores = [CertStore(tmp_path / name / "certs").get("web.acme.localhost") for name in ("a", "b")]
    assert [s.certificate.fingerprint() for s in stores if s is not None] == [entry.fingerprint] * 2
    assert served == {"a": ["web.acme.localhost.pem"], "b": ["web.acme.localhost.pem"]}

    operators = LocalCA(tmp_path / "operators").issue(["*.acme.localhost"])
    asyncio.run(b.install("web.acme.localhost", operators.chain_pem, operators.key_pem))
    asyncio.run(a.reconcile())
    assert served == {"a": ["_wildcard_.acme.localhost.pem"], "b": ["_wildcard_.acme.localhost.pem"]}
    assert [(e.hostname, e.source) for e in asyncio.run(a.entries())] == [("*.acme.localhost", "operator")]


def test_a_failed_order_is_not_repeated_by_another_daemon_before_its_pause(
    engine: Engine, box: SecretBox, tmp_path: Path
) -> None:
    async def nothing(path: Path) -> None:
        pass

    def door(name: str) -> Certificates:
        ledger = SharedCertificates(engine, box, name)
        ca = LocalCA(tmp_path / name / "ca")
        return Certificates(ledger, CertStore(tmp_path / name / "certs"), ca, nothing, nothing, clock=lambda: NOW)

    a, b = door("a"), door("b")
    for controller in (a, b):  # no ACME server: a name outside .localhost fails
        controller.want(["shop.example.com"])
        asyncio.run(controller.reconcile())
    [entry] = asyncio.run(b.entries())
    assert entry.last_error is not None and "no ACME server" in entry.last_error
    assert (entry.retry_at, entry.retry) == (NOW + timedelta(minutes=1), timedelta(minutes=1))  # tried once, not twice


def test_a_due_certificate_is_renewed_once_for_every_door(engine: Engine, box: SecretBox, tmp_path: Path) -> None:
    now = [NOW]
    served: dict[str, list[Path]] = {"a": [], "b": []}

    def door(name: str) -> Certificates:
        async def serve(path: Path) -> None:
            served[name].append(path)

        ca = LocalCA(tmp_path / name / "ca")
        share_local_ca(engine, box, ca)
        ledger = SharedCertificates(engine, box, name)
        return Certificates(ledger, CertStore(tmp_path / name / "certs"), ca, serve, serve, clock=lambda: now[0])

    a, b = door("a"), door("b")
    for controller in (a, b):
        controller.want(["web.acme.localhost"])
        asyncio.run(controller.reconcile())
    [first] = asyncio.run(a.entries())
    now[0] = first.renew_at() or NOW  # due, at both doors
    for controller in (a, b):
        asyncio.run(controller.reconcile())
    [renewed] = asyncio.run(b.entries())
    assert renewed.fingerprint != first.fingerprint and (renewed.renew_at() or NOW) > now[0]
    stores = [CertStore(tmp_path / name / "certs").get("web.acme.localhost") for name in ("a", "b")]
    assert [s.certificate.fingerprint() for s in stores if s is not None] == [renewed.fingerprint] * 2
    assert [len(paths) for paths in served.values()] == [2, 2]  # the first and the renewed one, at each door


def test_an_upgraded_homes_certificates_are_shared_once_not_ordered_again(
    engine: Engine, box: SecretBox, ca: LocalCA, tmp_path: Path
) -> None:
    """A home kept before certificates were shared: its certificates go to the ledger at its daemon's first sync,
    and are served on; after that, one the ledger no longer holds (removed at another daemon) is not put back."""
    served: list[str] = []

    async def serve(path: Path) -> None:
        served.append(path.name)

    async def unserve(path: Path) -> None:
        served.remove(path.name)

    store = CertStore(tmp_path / "a" / "certs")
    kept = ca.issue(["shop.example.com"])
    store.save(kept, "acme")  # as the daemon before the upgrade kept it
    store.save(LocalCA(tmp_path / "a" / "old-ca").issue(["web.acme.localhost"]), "local")  # its own CA's
    (store.directory / "failed.example.com.json").write_text('{"last_error": "rate limited"}')  # an old error

    def door() -> Certificates:
        return Certificates(SharedCertificates(engine, box, "a"), store, ca, serve, unserve, clock=lambda: NOW)

    upgraded = door()
    upgraded.want(["shop.example.com"])
    asyncio.run(upgraded.reconcile())  # no ACME server: an order would fail, and say so
    [entry] = asyncio.run(upgraded.entries())
    assert (entry.hostname, entry.source, entry.fingerprint, entry.last_error) == (
        "shop.example.com",
        "acme",
        kept.fingerprint(),
        None,
    )
    assert served == ["shop.example.com.pem"]  # not the old CA's: the platform's CA signs it again when wanted
    assert not (store.directory / "failed.example.com.json").exists()

    SharedCertificates(engine, box, "b").remove("shop.example.com")  # an operator's `certs remove` at b, say
    served.clear()
    asyncio.run(door().sync())  # a started again
    assert asyncio.run(upgraded.entries()) == [] and store.get("shop.example.com") is None
