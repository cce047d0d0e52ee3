"""`/keys` (SSH public keys) and `/tokens` (API tokens). A tenant manages its own; operators all."""

from fastapi import APIRouter, Response

from strata.api.deps import DB, Caller, RowId, check_credential_role, listing_scope
from tenants import keys, tokens
from tenants.errors import NotFound
from tenants.models import saved_id
from tenants.schemas import KeyCreate, KeyRead, TokenCreate, TokenCreated, TokenRead

router = APIRouter(tags=["credentials"])


@router.get("/keys")
def list_keys(session: DB, principal: Caller, tenant: str | None = None) -> list[KeyRead]:
    return keys.list_keys(session, listing_scope(principal, tenant))


@router.post("/keys", status_code=201)
def add_key(session: DB, principal: Caller, spec: KeyCreate) -> KeyRead:
    check_credential_role(principal, spec.role, spec.tenant, spec.member)
    return keys.add_key(session, principal.actor, spec)


@router.delete("/keys/{key_id}", status_code=204)
def remove_key(session: DB, principal: Caller, key_id: RowId) -> Response:
    _own(principal, keys.get_key(session, key_id).tenant, f"no SSH key with id {key_id}")
    keys.remove_key(session, principal.actor, key_id)
    return Response(status_code=204)


@router.get("/tokens")
def list_tokens(session: DB, principal: Caller, tenant: str | None = None) -> list[TokenRead]:
    return tokens.list_tokens(session, listing_scope(principal, tenant))


@router.post("/tokens", status_code=201)
def create_token(session: DB, principal: Caller, spec: TokenCreate) -> TokenCreated:
    """The answer holds the token's secret; it is shown this once and stored only as a hash."""
    check_credential_role(principal, spec.role, spec.tenant, spec.member)
    tokens.check_name(spec.name)
    row, secret = tokens.mint(session, principal.actor, spec)
    return TokenCreated(**tokens.get_token(session, saved_id(row)).model_dump(), token=secret)


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(session: DB, principal: Caller, token_id: RowId) -> Response:
    _own(principal, tokens.get_token(session, token_id).tenant, f"no token with id {token_id}")
    tokens.revoke(session, principal.actor, token_id)
    return Response(status_code=204)


def _own(principal: Caller, owner: str | None, missing: str) -> None:
    """A tenant may remove only its own credentials; others (and operators') look absent to it."""
    if not principal.is_operator and owner != principal.tenant:
        raise NotFound(missing)
