"""SSH public keys that may log in to the platform's SSH server, each with a role (and a tenant)."""

from typing import Any

from sqlmodel import Session, col, select

from tenants import audit
from tenants.db import commit
from tenants.enums import Role
from tenants.errors import Conflict, NotFound
from tenants.members import member_id
from tenants.models import Member, SshKey, Tenant, saved_id
from tenants.schemas import KeyCreate, KeyRead
from tenants.sshkeys import parse_public_key
from tenants.tenancy import credential_owner


def add_key(session: Session, actor: str, spec: KeyCreate) -> KeyRead:
    key = parse_public_key(spec.public_key)
    tenant = credential_owner(session, spec.role, spec.tenant)
    if session.exec(select(SshKey.id).where(SshKey.fingerprint == key.fingerprint)).first() is not None:
        raise Conflict(f"key {key.fingerprint} is registered already; remove it first", field="public_key")
    row = SshKey(
        fingerprint=key.fingerprint,
        public_key=key.openssh,
        comment=key.comment,
        role=spec.role,
        tenant_id=tenant.id if tenant else None,
        member_id=member_id(session, tenant, spec.member),
    )
    session.add(row)
    audit.record(
        session, actor, "key.add", spec.tenant, fingerprint=key.fingerprint, role=spec.role, member=spec.member
    )
    commit(session, conflict=f"key {key.fingerprint} is registered already")
    return _read(row, spec.tenant, spec.member)


def list_keys(session: Session, tenant: str | None = None) -> list[KeyRead]:
    query = _query().order_by(col(SshKey.id))
    if tenant is not None:
        query = query.where(Tenant.name == tenant)
    return [_read(*row) for row in session.exec(query)]


def find_key(session: Session, fingerprint: str) -> KeyRead | None:
    """The registered key with this SHA256 fingerprint, or None."""
    row = session.exec(_query().where(SshKey.fingerprint == fingerprint)).first()
    return _read(*row) if row else None


def get_key(session: Session, key_id: int) -> KeyRead:
    row = session.exec(_query().where(SshKey.id == key_id)).first()
    if row is None:
        raise NotFound(f"no SSH key with id {key_id}")
    return _read(*row)


def remove_key(session: Session, actor: str, key_id: int) -> None:
    key = get_key(session, key_id)
    session.delete(session.get(SshKey, key_id))
    audit.record(session, actor, "key.remove", key.tenant, fingerprint=key.fingerprint)
    session.commit()


def _query() -> Any:
    """(key, its tenant's name, its member's name) rows: the owner's keys have no member."""
    return (
        select(SshKey, Tenant.name, Member.name)
        .outerjoin(Tenant, col(SshKey.tenant_id) == Tenant.id)
        .outerjoin(Member, col(SshKey.member_id) == Member.id)
    )


def _read(key: SshKey, tenant: str | None, member: str | None) -> KeyRead:
    return KeyRead(
        id=saved_id(key),
        fingerprint=key.fingerprint,
        comment=key.comment,
        role=Role(key.role),
        tenant=tenant,
        member=member,
        created_at=key.created_at,
    )
