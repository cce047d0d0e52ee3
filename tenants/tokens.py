"""API tokens and the principal they stand for.

A token is 32 random bytes shown once; the database keeps its SHA-256 only. High-entropy secrets need no
slow hash: nobody can guess a preimage, and a lookup by digest is a plain index scan.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, select

from tenants import audit
from tenants.enums import MemberRole, Role
from tenants.errors import Invalid, NotFound
from tenants.members import member_id
from tenants.models import ApiToken, Member, Tenant, saved_id, utcnow
from tenants.schemas import TokenCreate, TokenRead
from tenants.tenancy import credential_owner

TOKEN_PREFIX = "st_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: an operator (sees everything) or one tenant (sees only itself), as one of its members
    (`member`, with its role now) or with the tenant's own credentials (the owner's: `member` None)."""

    role: Role
    tenant: str | None
    token_id: int
    token_name: str
    member: str | None = None
    member_role: MemberRole | None = None  # None for an operator

    @property
    def actor(self) -> str:
        """How the audit log names this caller: `operator/TOKEN`, `TENANT/TOKEN`, `TENANT/MEMBER/TOKEN`."""
        return "/".join(part for part in (self.tenant or "operator", self.member, self.token_name) if part)

    @property
    def is_operator(self) -> bool:
        return self.role == Role.OPERATOR


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> None:
    """A name a token may be given by its user: no `/`, which the audit log's actor (`TENANT/MEMBER/NAME`) uses to
    name members: a token of no member named `bob/x` would pass for bob's."""
    if "/" in name:
        raise Invalid("a token's name has no '/' (the audit log names members with it)", field="name")


def mint(session: Session, actor: str, spec: TokenCreate) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the secret, which exists nowhere else afterwards."""
    tenant = credential_owner(session, spec.role, spec.tenant)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(seconds=spec.ttl_seconds) if spec.ttl_seconds else None
    row = ApiToken(
        token_hash=digest(secret),
        name=spec.name,
        role=spec.role,
        tenant_id=tenant.id if tenant else None,
        member_id=member_id(session, tenant, spec.member),
        expires_at=expires,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "token.create",
        spec.tenant,
        id=row.id,
        name=spec.name,
        role=spec.role,
        member=spec.member,
        expires_at=expires.isoformat() if expires else None,
    )
    session.commit()
    return row, secret


def authenticate(session: Session, secret: str) -> Principal | None:
    """The principal of a valid, unexpired token, with its member's role as it is now; else None."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    row = session.exec(_query().where(ApiToken.token_hash == digest(secret))).first()
    if row is None:
        return None
    token, tenant_name, member, member_role = row
    if token.expires_at is not None and token.expires_at <= utcnow():
        return None
    if token.member_id is not None and member is None:  # its member is gone (the cascade removes it, too)
        return None
    role = Role(token.role)
    if role == Role.OPERATOR:
        return Principal(role, None, saved_id(token), token.name)
    acting = MemberRole(member_role) if member_role else MemberRole.OWNER
    return Principal(role, tenant_name, saved_id(token), token.name, member, acting)


def list_tokens(session: Session, tenant: str | None = None) -> list[TokenRead]:
    query = _query().order_by(col(ApiToken.id))
    if tenant is not None:
        query = query.where(Tenant.name == tenant)
    return [_read(token, name, member) for token, name, member, _ in session.exec(query)]


def get_token(session: Session, token_id: int) -> TokenRead:
    row = session.exec(_query().where(ApiToken.id == token_id)).first()
    if row is None:
        raise NotFound(f"no token with id {token_id}")
    token, tenant, member, _ = row
    return _read(token, tenant, member)


def _query() -> Any:
    """(token, its tenant's name, its member's name and role) rows: the owner's credentials have no member."""
    return (
        select(ApiToken, Tenant.name, Member.name, Member.role)
        .outerjoin(Tenant, col(ApiToken.tenant_id) == Tenant.id)
        .outerjoin(Member, col(ApiToken.member_id) == Member.id)
    )


def revoke(session: Session, actor: str, token_id: int) -> None:
    token = get_token(session, token_id)
    row = session.get(ApiToken, token_id)
    session.delete(row)
    audit.record(session, actor, "token.revoke", token.tenant, id=token_id, name=token.name)
    session.commit()


def _read(token: ApiToken, tenant: str | None, member: str | None) -> TokenRead:
    return TokenRead(
        id=saved_id(token),
        name=token.name,
        role=Role(token.role),
        tenant=tenant,
        member=member,
        created_at=token.created_at,
        expires_at=token.expires_at,
    )
