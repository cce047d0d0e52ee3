"""The front door's certificates kept in the database for every daemon (`gateway.cert_ledger.Ledger`), and the
platform's one local CA: one order per name serves every daemon's door, and every door's `.localhost` certificates
chain to the same CA. Private keys are sealed with the installation's key, which every daemon's home holds."""

import logging
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Engine

from gateway.cert_ledger import Entry
from gateway.certs import SOURCES, Certificate, CertificateError, LocalCA, Source
from tenants import certificates, db
from tenants.models import SharedCertificate
from tenants.secrets import SecretBox, SecretKeyError

log = logging.getLogger(__name__)


class SharedCertificates:
    """The `Ledger` of daemon `name` on the database of `engine`."""

    def __init__(self, engine: Engine, box: SecretBox, name: str) -> None:
        self.engine, self.box, self.name = engine, box, name

    def entries(self) -> list[Entry]:
        with db.session(self.engine) as session:
            return [_entry(row) for row in certificates.listed(session)]

    def certificate(self, hostname: str) -> Certificate | None:
        """None too for a key that no longer unseals (the sole daemon of a SQLite database replaced its key) or a
        damaged row: logged, and the entry removed, so that the name is ordered again."""
        with db.session(self.engine) as session:
            try:
                found = certificates.unsealed(session, self.box, hostname)
                return None if found is None else Certificate.from_pem(found[1].encode(), found[2].encode())
            except (SecretKeyError, CertificateError) as exc:
                if certificates.is_operators(session, hostname):  # never ordered again, so never dropped here
                    log.error("the operator's certificate of %s is unusable: add it again (%s)", hostname, exc)
                    return None
                log.error("the stored certificate of %s is unusable, so it is ordered again: %s", hostname, exc)
                certificates.remove(session, hostname)
                return None

    def claim(self, hostname: str, now: datetime, until: datetime, *, seen: str | None) -> bool:
        with db.session(self.engine) as session:
            return certificates.claim(session, self.name, hostname, now, until, seen=seen)

    def put(self, certificate: Certificate, source: Source) -> bool:
        row = SharedCertificate(
            hostname=certificate.hostnames[0],
            hostnames=" ".join(certificate.hostnames),
            source=source,
            chain_pem=certificate.chain_pem.decode(),
            fingerprint=certificate.fingerprint(),
            issuer=certificate.issuer,
            not_before=certificate.not_before,
            not_after=certificate.not_after,
        )
        with db.session(self.engine) as session:
            return certificates.put(session, self.box, row, certificate.key_pem.decode())

    def fail(self, hostname: str, message: str, retry_at: datetime, retry: timedelta) -> None:
        with db.session(self.engine) as session:
            certificates.fail(session, self.name, hostname, message, retry_at, int(retry.total_seconds()))

    def remove(self, hostname: str) -> None:
        with db.session(self.engine) as session:
            certificates.remove(session, hostname)


def share_local_ca(engine: Engine, box: SecretBox, ca: LocalCA) -> None:
    """Make the platform's local CA `ca`'s: the first daemon's (made on its first use) is stored, sealed, and every
    other daemon adopts it in place of its own, so a client trusting it reaches the apps at every door."""
    certificate_pem, key_pem = ca.pem_pair()
    with db.session(engine) as session:
        shared = certificates.local_ca(session, box, certificate_pem.decode(), key_pem.decode())
    ca.adopt(shared[0].encode(), shared[1].encode())


def _entry(row: SharedCertificate) -> Entry:
    return Entry(
        hostname=row.hostname,
        hostnames=tuple(row.hostnames.split()),
        source=cast(Source, row.source) if row.source in SOURCES else None,
        fingerprint=row.fingerprint,
        issuer=row.issuer,
        not_before=row.not_before,
        not_after=row.not_after,
        last_error=row.last_error,
        retry_at=row.retry_at,
        retry=None if row.retry_seconds is None else timedelta(seconds=row.retry_seconds),
    )
