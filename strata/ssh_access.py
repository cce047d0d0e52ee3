"""Who may log in over SSH, and as what: the daemon's side of `tui.ssh.Access`.

`admin` needs an operator's key; a tenant's name needs a key of that very tenant. Each session gets a token
of its own (expiring, revoked when the session ends), so the SSH server can do no more than that token.
"""

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import select

from tenants import audit, db, keys, tokens
from tenants.enums import Role
from tenants.models import ApiToken, saved_id
from tenants.schemas import TokenCreate
from tui.ssh.server import Grant

OPERATOR_USER = "admin"
SESSION_TOKEN_TTL = timedelta(hours=12)


class SshAccess:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def allowed(self, username: str, fingerprint: str, peer: str) -> bool:
        with db.session(self.engine) as session:
            key = keys.find_key(session, fingerprint)
            if key is not None and (
                (username == OPERATOR_USER and key.role == Role.OPERATOR)
                or (key.role == Role.TENANT and key.tenant == username)
            ):
                return True
            audit.record(
                session,
                f"ssh:{peer}",
                "ssh.refused",
                key.tenant if key else None,
                user=username,
                fingerprint=fingerprint,
                reason="unknown key" if key is None else "not this user's key",
            )
            session.commit()
            return False

    def grant(self, username: str, fingerprint: str, peer: str) -> Grant:
        tenant = None if username == OPERATOR_USER else username
        with db.session(self.engine) as session:
            _, secret = tokens.mint(
                session,
                "ssh",
                TokenCreate(
                    role=Role.OPERATOR if tenant is None else Role.TENANT,
                    tenant=tenant,
                    name=f"ssh:{username}@{peer}",
                    ttl_seconds=int(SESSION_TOKEN_TTL.total_seconds()),
                ),
            )
        return Grant(username=username, tenant=tenant, token=secret)

    def end(self, grant: Grant, peer: str, command: str, exit_code: int, seconds: float) -> None:
        """Revoke the session's token, found by its secret (an operator may have revoked it already), and audit."""
        with db.session(self.engine) as session:
            token = session.exec(select(ApiToken).where(ApiToken.token_hash == tokens.digest(grant.token))).first()
            if token is not None:  # even expired: it goes with its session
                tokens.revoke(session, "ssh", saved_id(token))
            audit.record(
                session,
                _actor(grant, peer),
                "ssh.session",
                grant.tenant,
                command=command,
                exit_code=exit_code,
                seconds=round(seconds, 1),
            )
            session.commit()

    def record(self, grant: Grant, peer: str, action: str, tenant: str | None, detail: dict[str, Any]) -> None:
        with db.session(self.engine) as session:
            audit.record(session, _actor(grant, peer), action, tenant, **detail)
            session.commit()


def _actor(grant: Grant, peer: str) -> str:
    return f"{grant.tenant or 'operator'}/ssh:{grant.username}@{peer}"
