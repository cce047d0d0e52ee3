"""What every daemon of one platform must share, kept in its database: the platform's id, which its containers
carry as a label (a daemon with another id would take them for strangers' and start its own), and the fingerprint
of the key its secrets are sealed with (a daemon with another key could not unseal them)."""

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from tenants.errors import Invalid
from tenants.models import Installation


def join(session: Session, platform_id: str, key_fingerprint: str, *, sole: bool = False) -> tuple[str, bool]:
    """The platform's id, after checking this daemon's key; and whether the key was replaced. The first daemon's
    id and key become the platform's (`platform_id` is this daemon's own, from its home); a later daemon with
    another key is refused, saying so — unless it is the `sole` daemon the database can have (SQLite): then its
    key becomes the platform's (the secrets sealed with the old one are lost with it, as they were before)."""
    row = session.get(Installation, 1)
    if row is None:
        session.add(Installation(id=1, platform_id=platform_id, key_fingerprint=key_fingerprint))
        try:
            session.commit()
        except IntegrityError:  # another daemon joined first: its row stands, ours is checked against it
            session.rollback()
        row = session.get(Installation, 1)
        if row is None:
            raise RuntimeError("the installation's row was neither written nor found")
    if row.key_fingerprint == key_fingerprint:
        return row.platform_id, False
    if sole:
        row.key_fingerprint = key_fingerprint
        session.commit()
        return row.platform_id, True
    raise Invalid(
        f"this daemon's secret key (fingerprint {key_fingerprint}) is not the platform's "
        f"({row.key_fingerprint}): copy secret.key from the home of a daemon already running on this database"
    )
