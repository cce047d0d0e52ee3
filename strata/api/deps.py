"""Who is asking, and what they may see: the one place the control API decides authorisation."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session
from starlette.exceptions import HTTPException

from tenants import db, tokens
from tenants.enums import Role
from tenants.errors import Forbidden, NotFound
from tenants.tokens import Principal

_bearer = HTTPBearer(auto_error=False)


def get_session(request: Request) -> Iterator[Session]:
    with db.session(request.app.state.engine) as session:
        yield session


DB = Annotated[Session, Depends(get_session)]


def get_principal(
    session: DB, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    principal = tokens.authenticate(session, credentials.credentials) if credentials else None
    if principal is None:
        raise HTTPException(
            401, "a valid API token is needed (Authorization: Bearer ...)", {"WWW-Authenticate": "Bearer"}
        )
    return principal


Caller = Annotated[Principal, Depends(get_principal)]


def require_operator(principal: Caller) -> Principal:
    if not principal.is_operator:
        raise Forbidden("only an operator may do this")
    return principal


Operator = Annotated[Principal, Depends(require_operator)]


def scope(principal: Principal, tenant: str | None) -> None:
    """A tenant token may name only its own tenant; any other is as absent as one that never existed."""
    if tenant is not None and not principal.is_operator and tenant != principal.tenant:
        raise NotFound(f"no tenant named {tenant!r}", field="tenant")


def visible_tenant(principal: Caller, tenant: str) -> str:
    """Path dependency for `/tenants/{tenant}/...`: the name, if the caller may see it."""
    scope(principal, tenant)
    return tenant


TenantName = Annotated[str, Depends(visible_tenant)]

MAX_ROW_ID = 2**63 - 1  # what a database's BIGINT holds
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


def listing_scope(principal: Principal, tenant: str | None) -> str | None:
    """The tenant filter of a listing: as asked for an operator, always its own for a tenant."""
    scope(principal, tenant)
    return tenant if principal.is_operator else principal.tenant


def check_credential_role(principal: Principal, role: Role, tenant: str | None) -> None:
    """A tenant may create credentials only for itself and never an operator's."""
    if principal.is_operator:
        return
    if role == Role.OPERATOR:
        raise Forbidden("only an operator may create operator credentials")
    scope(principal, tenant)
