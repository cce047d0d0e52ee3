"""Metered usage: `/usage` (every tenant the caller may see), `/tenants/{tenant}/usage`, and `/metrics`, the
same counters for Prometheus (all time, per tenant, app and kind of node: read from `usage_total`, a row each,
never a sum over the hours)."""

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response
from pydantic import BeforeValidator

from strata.api.deps import DB, Caller, FrontDoor, TenantName, listing_scope
from tenants import tenancy
from tenants.schemas import METERED, UsageLine, UsageReport
from tenants.usage import totals, usage_report

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
# Prometheus' names of `UsageLine`'s counters, and what each counts
METRICS = {
    "cpu_seconds": ("strata_usage_cpu_seconds_total", "CPU time used by the app's containers"),
    "memory_mib_hours": ("strata_usage_memory_mib_hours_total", "memory held, sampled every 10 s"),
    "storage_gib_hours": ("strata_usage_storage_gib_hours_total", "volume sizes held"),
    "instance_hours": ("strata_usage_instance_hours_total", "instances running"),
    "requests": ("strata_usage_requests_total", "requests through the front door"),
    "bytes_in": ("strata_usage_received_bytes_total", "bytes read from clients by the front door"),
    "bytes_out": ("strata_usage_sent_bytes_total", "bytes sent to clients by the front door"),
}


@router.get("/usage")
def all_usage(session: DB, principal: Caller, tenant: str | None = None, since: Since = None) -> UsageReport:
    """Every tenant's usage for an operator; a tenant's credentials see their own only."""
    return usage_report(session, listing_scope(principal, tenant), _start(since), datetime.now(UTC))


@router.get("/tenants/{tenant}/usage")
def tenant_usage(session: DB, tenant: TenantName, since: Since = None) -> UsageReport:
    tenancy.get_tenant(session, tenant)
    return usage_report(session, tenant, _start(since), datetime.now(UTC))


# Its errors are JSON as every route's: only its answer is text (documented here, not by its response class)
PROMETHEUS_TEXT: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus' text format", "content": {"text/plain": {"schema": {"type": "string"}}}}
}


# The front door's access-log lines whose requests could not be metered (operators only: they are no tenant's)
LOST_LINES = {
    "log_lines_dropped": (
        "strata_usage_log_lines_dropped_total",
        "access-log lines HAProxy dropped (its FIFO full): requests and bytes not metered",
    ),
    "log_lines_unparsed": (
        "strata_usage_log_lines_unparsed_total",
        "access-log lines not understood: requests and bytes not metered",
    ),
}


@router.get("/metrics", response_class=Response, responses=PROMETHEUS_TEXT)
def metrics(session: DB, principal: Caller, gateway: FrontDoor) -> PlainTextResponse:
    """Prometheus' text format: each tenant's usage counters since metering began (a tenant's credentials:
    their own); for an operator, the access-log lines lost to metering since the daemon started too."""
    scope = listing_scope(principal, None)
    text = exposition(totals(session, scope))
    if scope is None:
        for attribute, (name, help_text) in LOST_LINES.items():
            text += f"# HELP {name} {help_text}\n# TYPE {name} counter\n{name} {getattr(gateway, attribute)}\n"
    return PlainTextResponse(text)


def exposition(lines: list[UsageLine]) -> str:
    out = []
    for field in METERED:
        name, help_text = METRICS[field]
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        for line in lines:
            labels = f'tenant="{line.tenant}",app="{line.app}",node_kind="{line.node_kind}"'
            out.append(f"{name}{{{labels}}} {getattr(line, field)}")
    return "\n".join(out) + "\n"


def _start(since: date | None) -> datetime:
    if since is None:
        return datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return datetime(since.year, since.month, since.day, tzinfo=UTC)
