"""`/events`: the audit log, newest first; a tenant token reads its own tenant's events only."""

from typing import Annotated

from fastapi import APIRouter, Query

from strata.api.deps import DB, MAX_ROW_ID, Caller, listing_scope
from tenants import audit
from tenants.errors import Invalid
from tenants.schemas import EventRead

router = APIRouter(tags=["events"])


@router.get("/events")
def list_events(
    session: DB,
    principal: Caller,
    tenant: str | None = None,
    member: Annotated[str | None, Query(description="only what this member of `tenant` did")] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_EVENTS_PER_PAGE)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ROW_ID, description="only events with a smaller id (paging)")
    ] = None,
) -> list[EventRead]:
    scoped = listing_scope(principal, tenant)
    if member is not None and scoped is None:
        raise Invalid("name the tenant of the member (`tenant`): members are per tenant", field="tenant")
    actor = f"{scoped}/{member}/" if member is not None else None
    rows = audit.list_events(session, tenant=scoped, actor_prefix=actor, limit=limit, before=before)
    return [EventRead.model_validate(row) for row in rows]
