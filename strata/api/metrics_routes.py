"""`/metrics`: the control plane's own Prometheus metrics (the front door's are HAProxy's, on its admin listener)."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from hosting.paas.sleeper import COLD_START_BUCKETS, ColdStarts
from strata.api.deps import ColdStartTimes, Operator

router = APIRouter(tags=["platform"])
TEXT: dict[int | str, dict[str, Any]] = {200: {"content": {"text/plain": {}}, "description": "Prometheus' text format"}}


@router.get("/metrics", response_class=PlainTextResponse, responses=TEXT)
async def metrics(cold_starts: ColdStartTimes, _: Operator) -> PlainTextResponse:
    """Cold starts of sleeping apps: how long the front door held each app's first request while it woke, per
    tenant and state woken from (paused, stopped), as a Prometheus histogram."""
    return PlainTextResponse(histogram(cold_starts), media_type="text/plain; version=0.0.4")


def histogram(cold_starts: ColdStarts) -> str:
    name = "strata_cold_start_seconds"
    lines = [
        f"# HELP {name} How long a sleeping app's first request was held while it woke.",
        f"# TYPE {name} histogram",
    ]
    for (tenant, woken_from), counts in sorted(cold_starts.counts.items()):
        labels = f'tenant="{tenant}",from="{woken_from}"'
        seen = 0
        for bound, count in zip(COLD_START_BUCKETS, counts, strict=True):
            seen += count
            lines.append(f'{name}_bucket{{{labels},le="{"+Inf" if bound == float("inf") else bound}"}} {seen}')
        lines.append(f"{name}_sum{{{labels}}} {cold_starts.sums[(tenant, woken_from)]}")
        lines.append(f"{name}_count{{{labels}}} {seen}")
    return "\n".join(lines) + "\n"
