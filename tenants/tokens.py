"""API tokens and the principal they stand for.

A token is 32 random bytes shown once; the database keeps its SHA-256 only. High-entropy secrets need no
slow hash: nobody can guess a preimage, and a lookup by digest is a plain index scan.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session, col, select

from tenants import audit
from tenants.enums import Role
from tenants.errors import NotFound
from tenants.models import ApiToken, Tenant, saved_id, utcnow
from tenants.schemas import TokenCreate, TokenRead
from tenants.tenancy import credential_owner

TOKEN_PREFIX = "st_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: an operator (sees everything) or one tenant (sees only itself)."""

    role: Role
    tenant: str | None
    token_id: int
    token_name: str

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"{self.tenant or 'operator'}/{self.token_name}"

    @property
    def is_operator(self) -> bool:
        return self.role == Role.OPERATOR


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
        expires_at=expires.isoformat() if expires else None,
    )
    session.commit()
    return row, secret


def authenticate(session: Session, secret: str) -> Principal | None:
    """The principal of a valid, unexpired token, else None."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    row = session.exec(
        select(ApiToken, Tenant.name).outerjoin(Tenant).where(ApiToken.token_hash == digest(secret))
    ).first()
    if row is None:
        return None
    token, tenant_name = row
    if token.expires_at is not None and token.expires_at <= utcnow():
        return None
    return Principal(Role(token.role), tenant_name, saved_id(token), token.name)


def list_tokens(session: Session, tenant: str | None = None) -> list[TokenRead]:
    query = select(ApiToken, Tenant.name).outerjoin(Tenant).order_by(col(ApiToken.id))
    if tenant is not None:
        query = query.where(Tenant.name == tenant)
    return [_read(token, name) for token, name in session.exec(query)]


def get_token(session: Session, token_id: int) -> TokenRead:
    row = session.exec(select(ApiToken, Tenant.name).outerjoin(Tenant).where(ApiToken.id == token_id)).first()
    if row is None:
        raise NotFound(f"no token with id {token_id}")
    return _read(*row)


def revoke(session: Session, actor: str, token_id: int) -> None:
    token = get_token(session, token_id)
    row = session.get(ApiToken, token_id)
    session.delete(row)
    audit.record(session, actor, "token.revoke", token.tenant, id=token_id, name=token.name)
    session.commit()


def _read(token: ApiToken, tenant: str | None) -> TokenRead:
    return TokenRead(
        id=saved_id(token),
        name=token.name,
        role=Role(token.role),
        tenant=tenant,
        created_at=token.created_at,
        expires_at=token.expires_at,
    )
