"""When an app sleeps and when it sleeps deeper: a pure function of the app, its instances and its traffic.

An app with no request for its `idle_stop_seconds` (the app's, else its plan's; 0: never) is paused: its
instances frozen (`docker pause`, woken in tens of milliseconds) and out of the routes, so the front door hands
its next request to the activator, which wakes it. Paused `STOP_AFTER_IDLE_FACTOR` times as long, its instances
are stopped too (they free their memory; waking takes a start and a health check), unless they run on a VM node:
there a stop frees nothing the host can use (the VM keeps its memory), and a start in the guest is slow (under
TCG here, 25-30 s: the engine's shim and runc are emulated), so they stay paused. Only an app at rest sleeps:
every instance of its current revision, as many as its replicas, ready, and nothing in flight. A sleeping app
whose desired state changed (a deploy, a scale, sleep turned off) is woken, and the reconciler takes it on; one
scaled to zero is not: its instances are removed as they are.
"""

from collections.abc import Sequence
from enum import StrEnum

from hosting.paas.tracked import Tracked
from tenants.enums import AppKind, InstanceState
from tenants.instances import DesiredApp

STOP_AFTER_IDLE_FACTOR = 4  # paused at 15 min idle, stopped at 1 h


class Step(StrEnum):
    STAY = "stay"
    PAUSE = "pause"
    STOP = "stop"
    WAKE = "wake"


def asleep(instances: Sequence[Tracked]) -> InstanceState | None:
    """PAUSED or STOPPED when every instance of the app sleeps so (or some paused and the rest stopped: STOPPED
    is the deeper); None when any is awake."""
    states = {t.state for t in instances}
    if not states or not states <= {InstanceState.PAUSED, InstanceState.STOPPED}:
        return None
    return InstanceState.STOPPED if InstanceState.STOPPED in states else InstanceState.PAUSED


def decide(
    app: DesiredApp, instances: Sequence[Tracked], idle_seconds: float, in_flight: int, *, may_stop: bool
) -> Step:
    """The next step of the app's sleep, given its instances and how long since its last request ended or
    began (`in_flight` requests at the front door now); `may_stop`: its instances may sleep deeper than paused
    (none is on a VM node)."""
    sleeping = asleep(instances)
    if sleeping is not None:
        if app.replicas == 0:
            return Step.STAY  # scaled to zero or suspended: the reconciler removes its instances as they are
        if not _may_sleep(app) or any(t.revision != app.revision for t in instances) or len(instances) != app.replicas:
            return Step.WAKE
        deeper = idle_seconds >= app.idle_stop_seconds * STOP_AFTER_IDLE_FACTOR
        paused = sleeping == InstanceState.PAUSED
        return Step.STOP if paused and deeper and may_stop and not in_flight else Step.STAY
    at_rest = len(instances) == app.replicas and all(
        t.state == InstanceState.READY and t.revision == app.revision for t in instances
    )
    if _may_sleep(app) and at_rest and not in_flight and idle_seconds >= app.idle_stop_seconds:
        return Step.PAUSE
    return Step.STAY


def _may_sleep(app: DesiredApp) -> bool:
    """Web apps only (a service is reached by its tenant's containers, never through the front door)."""
    return app.kind == AppKind.WEB and app.idle_stop_seconds > 0 and app.replicas > 0
