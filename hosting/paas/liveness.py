"""Liveness: which instances' health is checked when, and what a result makes of an instance.

A starting instance is checked every pass until it passes (then it is `ready`, and routed to); a ready one every
few seconds. Three failures in a row make a ready instance `unhealthy` (out of the routes); unhealthy for a
minute, it is stopped, and the next pass restarts it as a crashed one. An instance never healthy within its start
period is stopped the same way at once. `judge` holds these rules without I/O; `Liveness` runs the checks.
"""

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hosting.paas.health import OK, REFUSED, HealthChecker
from hosting.paas.tracked import Tracked
from tenants.enums import AppKind, InstanceState
from tenants.instances import ActionEvent, DesiredApp

HEALTH_INTERVAL_SECONDS = 2.0  # between checks of an instance that is ready
UNHEALTHY_AFTER_FAILURES = 3
RESTART_UNHEALTHY_AFTER_SECONDS = 60.0
START_PERIOD_SECONDS = 60.0  # an instance never healthy this long after it started is stopped and restarted
STABLE_AFTER_SECONDS = 30.0  # healthy and running this long forgives earlier crashes
# Checks under way at once, each holding a socket (a TCP check for `health.LINGER_SECONDS`): enough to check 10,000
# instances in about the interval, few enough to stay under a 1,024-descriptor limit with the daemon's own.
MAX_PARALLEL_CHECKS = 500
# Not checked: being removed, or asleep with their app (frozen or stopped until its next request)
UNCHECKED = (InstanceState.STOPPING, InstanceState.PAUSED, InstanceState.STOPPED)


@dataclass(frozen=True)
class Verdict:
    """What a health result made of an instance: whether to stop it now, and the event to log, if any."""

    stop: bool = False
    event: ActionEvent | None = None


NOTHING = Verdict()  # what most results make of an instance: one value for them all (10,000 every 2 s)


def judge(app: DesiredApp, tracked: Tracked, result: str, now: float) -> Verdict:
    """Apply one health result (`now` is monotonic) to `tracked`: its state, streaks and message."""
    tracked.checked_at = now
    tracked.last_health = result
    if result == OK:
        tracked.failures = 0
        tracked.unhealthy_since = None
        tracked.message = None
        if tracked.crashes and tracked.age() > STABLE_AFTER_SECONDS:  # the clock read only when there is one
            tracked.crashes = 0
        if tracked.state != InstanceState.READY:
            tracked.state = InstanceState.READY
            return Verdict(event=_event("instance.ready", app, tracked, endpoint=tracked.endpoint))
        return NOTHING
    tracked.failures += 1
    check = describe_check(app, result)
    if tracked.state == InstanceState.READY:
        if tracked.failures < UNHEALTHY_AFTER_FAILURES:
            return NOTHING  # a failure or two: not unhealthy yet
        tracked.state = InstanceState.UNHEALTHY
        tracked.unhealthy_since = now
        tracked.message = f"unhealthy: {check}"
        return Verdict(event=_event("instance.unhealthy", app, tracked, health=result))
    if tracked.state == InstanceState.UNHEALTHY:
        tracked.message = f"unhealthy: {check}"
        if tracked.unhealthy_since is None:
            tracked.unhealthy_since = now  # adopted unhealthy after a restart: timed from now
        if now - tracked.unhealthy_since <= RESTART_UNHEALTHY_AFTER_SECONDS:
            return NOTHING
        tracked.unhealthy_since = None
        tracked.stopped_because = f"unhealthy for over {RESTART_UNHEALTHY_AFTER_SECONDS:.0f} s: {check}"
        reason = f"unhealthy for over {RESTART_UNHEALTHY_AFTER_SECONDS:.0f}s"
        return Verdict(stop=True, event=_event("instance.stopped", app, tracked, reason=reason))
    if tracked.age() <= START_PERIOD_SECONDS:  # not healthy yet
        if not tracked.crashes:  # else its message says why it was restarted, which matters more
            tracked.message = f"waiting for its health check: {check}"
        return NOTHING
    # Never healthy: a liveness failure, stopped now and restarted with backoff as a crash is.
    tracked.state = InstanceState.UNHEALTHY
    tracked.message = tracked.stopped_because = f"not healthy {START_PERIOD_SECONDS:.0f} s after start: {check}"
    return Verdict(stop=True, event=_event("instance.unhealthy", app, tracked, health=result, reason=check))


def describe_check(app: DesiredApp, result: str) -> str:
    """A failed health check in words: what was tried, and what came of it."""
    if app.kind == AppKind.POSTGRES:
        tried = f"a PostgreSQL login on port {app.port}"
    elif app.health_path is None:
        tried = f"a TCP connect to port {app.port}"
    else:
        tried = f"GET {app.health_path} on port {app.port}"
    if result == REFUSED:
        result = "connection refused (is the app listening on that port?)"
    return f"{tried}: {result}"


def _event(action: str, app: DesiredApp, tracked: Tracked, **detail: object) -> ActionEvent:
    return ActionEvent(action, app.tenant, {"app": app.name, "instance": tracked.id, **detail})


class Liveness:
    """Runs the checks that are due and judges their results."""

    def __init__(self, checker: HealthChecker | None = None) -> None:
        self.checker = checker or HealthChecker()

    async def check(
        self, tracked: Iterable[Tracked], apps: Mapping[int, DesiredApp], stopped: set[str], now: float
    ) -> list[tuple[Tracked, Verdict]]:
        """Check every live instance that is due (those created this very pass included), up to
        `MAX_PARALLEL_CHECKS` at once; one put to sleep while its check ran is not judged by it."""
        due = [
            (apps[t.app_id], t, t.endpoint)
            for t in tracked
            if t.app_id in apps
            and t.state not in UNCHECKED
            and t.endpoint is not None
            and t.id not in stopped
            and t.restart_at is None
            and now - t.checked_at >= (HEALTH_INTERVAL_SECONDS if t.state == InstanceState.READY else 0.0)
        ]
        checked = zip(due, await self._run(due), strict=True)
        return [(t, judge(app, t, result, now)) for (app, t, _), result in checked if t.state not in UNCHECKED]

    async def _run(self, due: list[tuple[DesiredApp, Tracked, str]]) -> list[str]:
        """Each check's result, in order: run by up to `MAX_PARALLEL_CHECKS` workers, each taking the next check
        as it finishes one, rather than by a task per check (10,000 tasks cost more than fake checks do)."""
        results = [""] * len(due)
        queue = iter(enumerate(due))

        async def worker() -> None:
            for index, (app, _, endpoint) in queue:
                results[index] = await self.checker.check(endpoint, app.health_path, app.kind)

        await asyncio.gather(*(worker() for _ in range(min(MAX_PARALLEL_CHECKS, len(due)))))
        return results

    async def close(self) -> None:
        await self.checker.close()
