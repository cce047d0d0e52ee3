"""The front door's certificates and the local CA, kept for every daemon (tables `certificate` and `local_ca`).

Private keys are sealed with the installation's key (`SecretBox`) before they reach the database. A daemon claims
a name before ordering it (a lease that ends at `until`, or when that daemon stores or fails the order), so one
order per name serves every door, whatever the number of daemons.
"""

from datetime import datetime

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer
from sqlmodel import Session, col, delete, select

from tenants import db
from tenants.models import SharedCertificate, SharedLocalCA
from tenants.secrets import SecretBox, SecretKeyError

OPERATOR = "operator"  # the source of an operator's certificate: the platform never replaces it


def listed(session: Session) -> list[SharedCertificate]:
    """Every row by hostname, without its chain and key (these are not loaded: read them with `unsealed`)."""
    query = select(SharedCertificate).options(
        defer(SharedCertificate.chain_pem),  # type: ignore[arg-type]
        defer(SharedCertificate.key_sealed),  # type: ignore[arg-type]
    )
    return list(session.exec(query.order_by(col(SharedCertificate.hostname))))


def unsealed(session: Session, box: SecretBox, hostname: str) -> tuple[SharedCertificate, str, str] | None:
    """The row of `hostname` with its chain and its key unsealed; None if it holds no certificate.
    `SecretKeyError` if the key was sealed with another key than `box`'s."""
    row = session.get(SharedCertificate, hostname)
    if row is None or row.chain_pem is None or row.key_sealed is None:
        return None
    return row, row.chain_pem, box.decrypt(row.key_sealed)


def claim(session: Session, daemon: str, hostname: str, now: datetime, until: datetime, *, seen: str | None) -> bool:
    """Whether `daemon` may order `hostname` now: no other holds a claim on it that lasts past `now`, its
    certificate is still the one `daemon` read (`seen`, its fingerprint, None for none) and no failed order's pause
    lasts (a daemon that read the row before another stored or failed an order would order it again). The claim
    is `daemon`'s until `until` (or its `put`/`fail`). Atomic: of daemons claiming at once, one wins."""
    table = SharedCertificate.__table__  # type: ignore[attr-defined]
    insert = db.insert(session.get_bind().dialect.name, table)
    session.execute(insert.values(hostname=hostname, hostnames=hostname).on_conflict_do_nothing())
    claimed = session.execute(
        update(SharedCertificate)
        .where(col(SharedCertificate.hostname) == hostname)
        .where(
            col(SharedCertificate.fingerprint).is_(None) if seen is None else col(SharedCertificate.fingerprint) == seen
        )
        .where(or_(col(SharedCertificate.retry_at).is_(None), col(SharedCertificate.retry_at) <= now))
        .where(
            or_(
                col(SharedCertificate.claimed_by).is_(None),
                col(SharedCertificate.claimed_by) == daemon,
                col(SharedCertificate.claimed_until) <= now,
            )
        )
        .values(claimed_by=daemon, claimed_until=until)
    )
    session.commit()
    return bool(claimed.rowcount == 1)  # type: ignore[attr-defined]


def is_operators(session: Session, hostname: str) -> bool:
    row = session.get(SharedCertificate, hostname)
    return row is not None and row.source == OPERATOR


def put(session: Session, box: SecretBox, row: SharedCertificate, key_pem: str) -> bool:
    """Store `row`'s certificate with `key_pem` sealed, replacing the name's row (its error, backoff and claim go);
    whether it was stored: a platform's certificate never replaces an operator's."""
    if row.source != OPERATOR:  # the row locked while it is read and replaced: an operator's upload waits
        existing = session.get(SharedCertificate, row.hostname, with_for_update=True)
        if existing is not None and existing.source == OPERATOR:
            return False
    row.key_sealed = box.encrypt(key_pem)
    row.last_error = row.retry_at = row.retry_seconds = row.claimed_by = row.claimed_until = None
    session.merge(row)
    session.commit()
    return True


def fail(session: Session, daemon: str, hostname: str, message: str, retry_at: datetime, retry_seconds: int) -> None:
    """Record a failed order of `hostname` (a certificate stored stays) and when to try again; `daemon`'s claim
    ends."""
    row = session.get(SharedCertificate, hostname) or SharedCertificate(hostname=hostname, hostnames=hostname)
    row.last_error, row.retry_at, row.retry_seconds = message, retry_at, retry_seconds
    if row.claimed_by == daemon:
        row.claimed_by = row.claimed_until = None
    session.add(row)
    session.commit()


def remove(session: Session, hostname: str) -> None:
    session.exec(delete(SharedCertificate).where(col(SharedCertificate.hostname) == hostname))
    session.commit()


def local_ca(session: Session, box: SecretBox, certificate_pem: str, key_pem: str) -> tuple[str, str]:
    """The platform's local CA (certificate, key): the one stored, or else this one, stored first. A stored key
    sealed with another key (the sole daemon of a SQLite database replaced its key) is replaced by this one."""
    row = session.get(SharedLocalCA, 1)
    if row is None:
        session.add(SharedLocalCA(id=1, certificate_pem=certificate_pem, key_sealed=box.encrypt(key_pem)))
        try:
            session.commit()
            return certificate_pem, key_pem
        except IntegrityError:  # another daemon stored its CA first: that one is the platform's
            session.rollback()
        row = session.get(SharedLocalCA, 1)
        if row is None:
            raise RuntimeError("the local CA's row was neither written nor found")
    try:
        return row.certificate_pem, box.decrypt(row.key_sealed)
    except SecretKeyError:
        row.certificate_pem, row.key_sealed = certificate_pem, box.encrypt(key_pem)
        session.commit()
        return certificate_pem, key_pem
