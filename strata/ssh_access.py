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
from tenants.schemas import KeyRead, TokenCreate
from tui.ssh.server import Grant

OPERATOR_USER = "admin"
SESSION_TOKEN_TTL = timedelta(hours=12)


class SshAccess:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def allowed(self, username: str, fingerprint: str, peer: str) -> bool:
        with db.session(self.engine) as session:
            key = keys.find_key(session, fingerprint)
            if _logs_in(key, username):
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
        """The session's token: a member's key acts with the member's role (the audit log names the key). Checked
        again for every session: a connection outlives a key removed (or its member) after it logged in."""
        tenant = None if username == OPERATOR_USER else username
        with db.session(self.engine) as session:
            key = keys.find_key(session, fingerprint)
            if key is None or not _logs_in(key, username):
                raise PermissionError(f"the key {fingerprint} may not log in as {username} (any longer)")
            _, secret = tokens.mint(
                session,
                "ssh",
                TokenCreate(
                    role=key.role,
                    tenant=tenant,
                    member=key.member,
                    name=f"ssh:{fingerprint}@{peer}",
                    ttl_seconds=int(SESSION_TOKEN_TTL.total_seconds()),
                ),
            )
            principal = tokens.authenticate(session, secret)
        if principal is None:  # its member was removed this very moment
            raise PermissionError(f"the key {fingerprint} lost its access")
        return Grant(username, tenant, secret, principal.actor, fingerprint, key.member, principal.member_role)

    def valid(self, grant: Grant) -> bool:
        """The session's key is still registered as it was (its member too, with the same role)."""
        with db.session(self.engine) as session:
            key = keys.find_key(session, grant.fingerprint)
            principal = tokens.authenticate(session, grant.token)
        return (
            key is not None
            and _logs_in(key, grant.username)
            and key.member == grant.member
            and principal is not None
            and principal.member_role == grant.member_role
        )

    def end(self, grant: Grant, command: str, exit_code: int, seconds: float) -> None:
        """Revoke the session's token, found by its secret (an operator may have revoked it already), and audit."""
        with db.session(self.engine) as session:
            token = session.exec(select(ApiToken).where(ApiToken.token_hash == tokens.digest(grant.token))).first()
            if token is not None:  # even expired: it goes with its session
                tokens.revoke(session, "ssh", saved_id(token))
            audit.record(
                session,
                grant.actor,
                "ssh.session",
                grant.tenant,
                command=command,
                exit_code=exit_code,
                seconds=round(seconds, 1),
            )
            session.commit()

    def record(self, grant: Grant, action: str, tenant: str | None, detail: dict[str, Any]) -> None:
        with db.session(self.engine) as session:
            audit.record(session, grant.actor, action, tenant, **detail)
            session.commit()


def _logs_in(key: KeyRead | None, username: str) -> bool:
    """`admin` needs an operator's key; a tenant's name, a key of that very tenant."""
    return key is not None and (
        (username == OPERATOR_USER and key.role == Role.OPERATOR)
        or (key.role == Role.TENANT and key.tenant == username)
    )
