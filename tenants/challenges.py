"""ACME's HTTP-01 challenges of every daemon's orders, for every daemon's front door to answer."""

from sqlmodel import Session, col, delete, select

from tenants.models import AcmeChallenge


def put(session: Session, daemon: str, token: str, key_authorization: str) -> None:
    session.merge(AcmeChallenge(token=token, key_authorization=key_authorization, daemon=daemon))
    session.commit()


def drop(session: Session, token: str) -> None:
    session.exec(delete(AcmeChallenge).where(col(AcmeChallenge.token) == token))
    session.commit()


def drop_all_of(session: Session, daemon: str) -> None:
    """What a daemon's orders left when it stopped mid-order: they are over."""
    session.exec(delete(AcmeChallenge).where(col(AcmeChallenge.daemon) == daemon))
    session.commit()


def of_others(session: Session, daemon: str) -> dict[str, str]:
    """The other daemons' challenges: token -> key authorization."""
    rows = session.exec(select(AcmeChallenge).where(col(AcmeChallenge.daemon) != daemon))
    return {row.token: row.key_authorization for row in rows}
