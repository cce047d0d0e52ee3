"""wrk's report, read: requests, rate, latency quantiles and failures by kind (shared by the benchmarks)."""

import re
from dataclasses import dataclass

FAILURE_KINDS = ("non-2xx", "connect", "read", "write", "timeout")


@dataclass(frozen=True)
class Report:
    requests: int
    rate: float  # requests per second
    p50_ms: float
    p99_ms: float
    failures: dict[str, int]  # kind -> count, for FAILURE_KINDS

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


def parse(out: str) -> Report:
    """Read `wrk --latency`'s output."""
    non_2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    counts = [non_2xx, *(int(n) for n in errors.groups())] if errors else [non_2xx, 0, 0, 0, 0]
    return Report(
        requests=int(_find(r"(\d+) requests in", out)),
        rate=float(_find(r"Requests/sec:\s+([\d.]+)", out)),
        p50_ms=_ms(out, "50%"),
        p99_ms=_ms(out, "99%"),
        failures=dict(zip(FAILURE_KINDS, counts, strict=True)),
    )


def _find(pattern: str, out: str) -> str:
    found = re.search(pattern, out)
    if found is None:
        raise SystemExit(f"wrk's report has no {pattern!r}:\n{out}")
    return found.group(1)


def _ms(out: str, quantile: str) -> float:
    found = re.search(rf"{quantile}\s+([\d.]+)(us|ms|s)", out)
    if found is None:
        raise SystemExit(f"wrk's report has no {quantile} latency:\n{out}")
    value, unit = found.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
