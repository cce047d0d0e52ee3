"""Per-app traffic over the last minute, for the console, fed from the front door's access log.

HAProxy's own counters (Prometheus, on the admin listener) run since its start and hold no latency quantiles;
the console wants the last minute's rate, p50/p99 and error rate, so each logged request lands in a bucket here.
"""

import bisect
import time
from collections import deque
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
    """The last minute of one app, as the console shows it."""

    requests_per_second: float
    p50_ms: float | None
    p99_ms: float | None
    error_rate: float
    requests: int


class RouteMetrics:
    """One app's requests in one-second buckets over the last minute."""

    __slots__ = ("_window",)

    def __init__(self) -> None:
        self._window: deque[_Second] = deque(maxlen=WINDOW_SECONDS)

    def observe(self, status: int, seconds: float, count: int = 1) -> None:
        """`count` requests answered `status` in `seconds`, now."""
        bucket = bisect.bisect_left(BUCKETS, seconds)
        now = int(time.monotonic())
        window = self._window
        if not window or window[-1].second != now:
            window.append(_Second(now))
        current = window[-1]
        current.requests += count
        current.latency[bucket] += count
        if status >= 500:
            current.errors += count

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
