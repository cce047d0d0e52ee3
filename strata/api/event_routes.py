"""`/events`: the audit log, newest first; a tenant token reads its own tenant's events only."""

from typing import Annotated

from fastapi import APIRouter, Query

from strata.api.deps import DB, MAX_ROW_ID, Caller, listing_scope
from tenants import audit
from tenants.schemas import EventRead

router = APIRouter(tags=["events"])


@router.get("/events")
def list_events(
    session: DB,
    principal: Caller,
    tenant: str | None = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_EVENTS_PER_PAGE)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ROW_ID, description="only events with a smaller id (paging)")
    ] = None,
) -> list[EventRead]:
    rows = audit.list_events(session, tenant=listing_scope(principal, tenant), limit=limit, before=before)
    return [EventRead.model_validate(row) for row in rows]
