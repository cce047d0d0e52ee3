"""Metered usage: `/usage` (every tenant the caller may see) and `/tenants/{tenant}/usage`; `/metrics` has the same
counters for Prometheus (`strata.api.metrics_routes`)."""

import re
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from strata.api.deps import DB, Caller, TenantName, listing_scope
from tenants import tenancy
from tenants.schemas import UsageReport
from tenants.usage import usage_report

router = APIRouter(tags=["usage"])


def _iso_date(value: object) -> object:
    """A day as YYYY-MM-DD only (pydantic would take a number for a timestamp)."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("a day as YYYY-MM-DD")
    return value


Since = Annotated[
    date | None,
    BeforeValidator(_iso_date),
    Query(description="the first day counted (UTC), YYYY-MM-DD; the first of this month when not given"),
]


@router.get("/usage")
def all_usage(session: DB, principal: Caller, tenant: str | None = None, since: Since = None) -> UsageReport:
    """Every tenant's usage for an operator; a tenant's credentials see their own only."""
    return usage_report(session, listing_scope(principal, tenant), _start(since), datetime.now(UTC))


@router.get("/tenants/{tenant}/usage")
def tenant_usage(session: DB, tenant: TenantName, since: Since = None) -> UsageReport:
    tenancy.get_tenant(session, tenant)
    return usage_report(session, tenant, _start(since), datetime.now(UTC))


def _start(since: date | None) -> datetime:
    if since is None:
        return datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return datetime(since.year, since.month, since.day, tzinfo=UTC)
