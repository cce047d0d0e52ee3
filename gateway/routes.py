"""The route table: which instances answer which hostnames, replaced whole and atomically.

The control plane hands the gateway a complete list of `RouteSpec`s whenever something changes; `apply`
builds a new host map and swaps one reference, so a request sees either the old table or the new one,
never a mix. Endpoint state (pooled connections, outstanding requests, failures) and per-route metrics and
per-tenant rate buckets carry over from one table to the next.
"""

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from gateway.limits import Limits
from gateway.metrics import RouteMetrics
from gateway.ratelimit import TokenBucket
from tenants.routes import RouteSpec


class Endpoint:
    """One instance's address, with its idle keep-alive connections and its recent failures."""

    __slots__ = ("address", "host", "port", "outstanding", "failures", "ejected_until", "idle", "removed", "_drained")

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.address, self.host, self.port = address, host, int(port)
        self.outstanding = 0
        self.failures = 0
        self.ejected_until = 0.0
        self.idle: list[Any] = []  # pooled upstream connections, most recently used last
        self.removed = False
        self._drained: asyncio.Event | None = None

    def failed(self, limits: Limits) -> None:
        """A connect failure or reset: after a few in a row the instance sits out for a while."""
        self.failures += 1
        if self.failures >= limits.eject_after_failures:
            self.ejected_until = time.monotonic() + limits.eject_seconds
            self.failures = 0

    def release(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0 and self._drained is not None:
            self._drained.set()

    async def drained(self, timeout: float) -> bool:
        """Wait until no request is in flight to this endpoint; False if `timeout` passed first."""
        if self.outstanding == 0:
            return True
        self._drained = self._drained or asyncio.Event()
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def close_idle(self) -> None:
        idle, self.idle = self.idle, []
        for connection in idle:
            connection.close()


class Route:
    __slots__ = ("tenant", "app", "endpoints", "bucket", "max_body", "metrics", "_next")

    def __init__(
        self, spec: RouteSpec, endpoints: tuple[Endpoint, ...], bucket: TokenBucket, metrics: RouteMetrics
    ) -> None:
        self.tenant, self.app = spec.tenant, spec.app
        self.endpoints = endpoints
        self.bucket = bucket
        self.max_body = spec.max_body_bytes
        self.metrics = metrics
        self._next = 0

    def pick(self, exclude: Endpoint | None = None) -> Endpoint | None:
        """The available endpoint with the fewest requests in flight (round robin among equals)."""
        endpoints = self.endpoints
        count = len(endpoints)
        if count == 1:
            only = endpoints[0]
            return only if only is not exclude and only.ejected_until <= time.monotonic() else None
        best: Endpoint | None = None
        now = 0.0
        start = self._next = (self._next + 1) % count if count else 0
        for offset in range(count):
            endpoint = endpoints[(start + offset) % count]
            if endpoint is exclude:
                continue
            if endpoint.ejected_until:
                now = now or time.monotonic()
                if endpoint.ejected_until > now:
                    continue
            if best is None or endpoint.outstanding < best.outstanding:
                best = endpoint
        return best


class RouteTable:
    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.hosts: dict[bytes, Route] = {}
        self._endpoints: dict[str, Endpoint] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self.metrics: dict[tuple[str, str], RouteMetrics] = {}

    def lookup(self, host: bytes) -> Route | None:
        return self.hosts.get(host)

    def apply(self, specs: Iterable[RouteSpec]) -> list[Endpoint]:
        """Replace the table; returns the endpoints that left it (their in-flight requests may finish)."""
        hosts: dict[bytes, Route] = {}
        endpoints: dict[str, Endpoint] = {}
        buckets: dict[str, TokenBucket] = {}
        metrics: dict[tuple[str, str], RouteMetrics] = {}  # only the apps routed now: a deleted app's series go
        for spec in specs:
            mine = tuple(endpoints.setdefault(a, self._endpoints.get(a) or Endpoint(a)) for a in spec.endpoints)
            bucket = buckets.get(spec.tenant) or self._buckets.get(spec.tenant)
            if bucket is None or (bucket.rate, bucket.burst) != (spec.requests_per_second, spec.burst):
                bucket = TokenBucket(spec.requests_per_second, spec.burst)
            buckets[spec.tenant] = bucket
            key = (spec.tenant, spec.app)
            metrics[key] = self.metrics.get(key) or RouteMetrics(spec.tenant, spec.app)
            route = Route(spec, mine, bucket, metrics[key])
            for name in (f"{spec.app}.{spec.tenant}.{self.domain}", *spec.hostnames):
                hosts[name.lower().encode()] = route
        gone = [endpoint for address, endpoint in self._endpoints.items() if address not in endpoints]
        for endpoint in gone:
            endpoint.removed = True
            endpoint.close_idle()
        self.hosts, self._endpoints, self._buckets, self.metrics = hosts, endpoints, buckets, metrics  # atomic
        return gone

    def endpoint(self, address: str) -> Endpoint | None:
        return self._endpoints.get(address)

    def endpoints(self) -> Iterable[Endpoint]:
        return self._endpoints.values()
