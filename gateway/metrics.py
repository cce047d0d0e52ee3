"""Per-route traffic: counters since start (for Prometheus) and a one-minute window (for the console).

Updating them is on the hot path: plain integer increments and one bisect per request.
"""

import bisect
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Upper bounds of the latency buckets, in seconds (the last one is +Inf).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))
WINDOW_SECONDS = 60


class _Second:
    __slots__ = ("second", "requests", "errors", "latency")

    def __init__(self, second: int) -> None:
        self.second = second
        self.requests = 0
        self.errors = 0  # 5xx answers
        self.latency = [0] * len(BUCKETS)


@dataclass(frozen=True)
class Traffic:
    """The last minute of one route, as the console shows it."""

    requests_per_second: float
    p50_ms: float | None
    p99_ms: float | None
    error_rate: float
    requests: int


class RouteMetrics:
    __slots__ = (
        "tenant",
        "app",
        "by_class",
        "latency",
        "latency_sum",
        "bytes_in",
        "bytes_out",
        "upstream_errors",
        "in_flight",
        "_window",
    )

    def __init__(self, tenant: str, app: str) -> None:
        self.tenant = tenant
        self.app = app
        self.by_class = [0] * 6  # index = status // 100
        self.latency = [0] * len(BUCKETS)
        self.latency_sum = 0.0
        self.bytes_in = 0
        self.bytes_out = 0
        self.upstream_errors = 0
        self.in_flight = 0
        self._window: deque[_Second] = deque(maxlen=WINDOW_SECONDS)

    def observe(self, status: int, seconds: float, bytes_in: int, bytes_out: int) -> None:
        bucket = bisect.bisect_left(BUCKETS, seconds)
        self.by_class[min(status // 100, 5)] += 1
        self.latency[bucket] += 1
        self.latency_sum += seconds
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        now = int(time.monotonic())
        window = self._window
        if not window or window[-1].second != now:
            window.append(_Second(now))
        current = window[-1]
        current.requests += 1
        current.latency[bucket] += 1
        if status >= 500:
            current.errors += 1

    def traffic(self) -> Traffic:
        now = int(time.monotonic())
        recent = [s for s in self._window if now - s.second < WINDOW_SECONDS]
        requests = sum(s.requests for s in recent)
        merged = [sum(s.latency[i] for s in recent) for i in range(len(BUCKETS))]
        span = max(1, min(WINDOW_SECONDS, now - recent[0].second + 1)) if recent else 1
        return Traffic(
            requests_per_second=requests / span,
            p50_ms=_quantile(merged, 0.50),
            p99_ms=_quantile(merged, 0.99),
            error_rate=sum(s.errors for s in recent) / requests if requests else 0.0,
            requests=requests,
        )


def _quantile(counts: list[int], q: float) -> float | None:
    """The upper bound (ms) of the bucket holding the q-quantile; None without samples."""
    total = sum(counts)
    if not total:
        return None
    rank, seen = q * total, 0
    for bound, count in zip(BUCKETS, counts, strict=True):
        seen += count
        if seen >= rank:
            return bound * 1000 if bound != float("inf") else BUCKETS[-2] * 1000
    return None


def render_prometheus(routes: Iterable[RouteMetrics], open_connections: int, unrouted: Mapping[int, int]) -> str:
    """The Prometheus text exposition format (version 0.0.4)."""
    lines = [
        "# HELP strata_gateway_open_connections Client connections open now.",
        "# TYPE strata_gateway_open_connections gauge",
        f"strata_gateway_open_connections {open_connections}",
        "# HELP strata_gateway_unrouted_total Answers that went to no app: unknown hosts, bad or slow requests.",
        "# TYPE strata_gateway_unrouted_total counter",
        *(f'strata_gateway_unrouted_total{{code="{code}"}} {count}' for code, count in sorted(unrouted.items())),
        "# HELP strata_gateway_requests_total Requests answered, by status class.",
        "# TYPE strata_gateway_requests_total counter",
    ]
    routes = list(routes)
    for m in routes:
        for index, count in enumerate(m.by_class):
            if count:
                lines.append(f'strata_gateway_requests_total{{{_labels(m)},code="{index}xx"}} {count}')
    lines += [
        "# HELP strata_gateway_request_seconds Time from request head to response end.",
        "# TYPE strata_gateway_request_seconds histogram",
    ]
    for m in routes:
        cumulative = 0
        for bound, count in zip(BUCKETS, m.latency, strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'strata_gateway_request_seconds_bucket{{{_labels(m)},le="{le}"}} {cumulative}')
        lines.append(f"strata_gateway_request_seconds_sum{{{_labels(m)}}} {m.latency_sum:.6f}")
        lines.append(f"strata_gateway_request_seconds_count{{{_labels(m)}}} {cumulative}")
    for name, help_, attribute, kind in (
        ("received_bytes_total", "Request body bytes from clients.", "bytes_in", "counter"),
        ("sent_bytes_total", "Response body bytes to clients.", "bytes_out", "counter"),
        ("upstream_errors_total", "Upstream connects refused, resets and timeouts.", "upstream_errors", "counter"),
        ("in_flight_requests", "Requests being answered now.", "in_flight", "gauge"),
    ):
        lines += [f"# HELP strata_gateway_{name} {help_}", f"# TYPE strata_gateway_{name} {kind}"]
        lines += [f"strata_gateway_{name}{{{_labels(m)}}} {getattr(m, attribute)}" for m in routes]
    return "\n".join(lines) + "\n"


def _labels(m: RouteMetrics) -> str:
    return f'tenant="{m.tenant}",app="{m.app}"'
