"""`/metrics`: the control plane's own Prometheus metrics (the front door's are HAProxy's, on its admin listener):
each tenant's metered usage since metering began (read from `usage_total`, a row each, never a sum over the
hours) and its sleeping apps' cold starts. A tenant's credentials see their own; an operator sees every tenant's,
and the access-log lines lost to metering since the daemon started."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response

from hosting.paas.sleeper import COLD_START_BUCKETS, ColdStarts
from strata.api.deps import DB, Caller, ColdStartTimes, FrontDoor, listing_scope
from tenants.schemas import METERED, UsageLine
from tenants.usage import totals

router = APIRouter(tags=["usage"])

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
def metrics(session: DB, principal: Caller, gateway: FrontDoor, cold_starts: ColdStartTimes) -> PlainTextResponse:
    """Prometheus' text format: usage counters and cold starts, the caller's tenant's (all, for an operator, with
    the access-log lines lost to metering)."""
    scope = listing_scope(principal, None)
    text = exposition(totals(session, scope)) + histogram(cold_starts, scope)
    if scope is None:
        for attribute, (name, help_text) in LOST_LINES.items():
            text += f"# HELP {name} {help_text}\n# TYPE {name} counter\n{name} {getattr(gateway, attribute)}\n"
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


def exposition(lines: list[UsageLine]) -> str:
    out = []
    for field in METERED:
        name, help_text = METRICS[field]
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        for line in lines:
            labels = f'tenant="{line.tenant}",app="{line.app}",node_kind="{line.node_kind}"'
            out.append(f"{name}{{{labels}}} {getattr(line, field)}")
    return "\n".join(out) + "\n"


def histogram(cold_starts: ColdStarts, tenant: str | None) -> str:
    """How long the front door held sleeping apps' first requests while they woke, per tenant (`tenant`'s only,
    if given) and state woken from (paused, stopped)."""
    name = "strata_cold_start_seconds"
    lines = [
        f"# HELP {name} How long a sleeping app's first request was held while it woke.",
        f"# TYPE {name} histogram",
    ]
    for (owner, woken_from), counts in sorted(cold_starts.counts.items()):
        if tenant is not None and owner != tenant:
            continue
        labels = f'tenant="{owner}",from="{woken_from}"'
        seen = 0
        for bound, count in zip(COLD_START_BUCKETS, counts, strict=True):
            seen += count
            lines.append(f'{name}_bucket{{{labels},le="{"+Inf" if bound == float("inf") else bound}"}} {seen}')
        lines.append(f"{name}_sum{{{labels}}} {cold_starts.sums[(owner, woken_from)]}")
        lines.append(f"{name}_count{{{labels}}} {seen}")
    return "\n".join(lines) + "\n"
