"""Liveness decisions on one instance: when a failing health check makes it unhealthy, when it is stopped to be
restarted, and what its message says meanwhile (no engine: the rules alone)."""

from datetime import UTC, datetime, timedelta

from hosting.paas.liveness import START_PERIOD_SECONDS, judge
from hosting.paas.planner import Crashed, Observed, plan
from hosting.paas.runtime import Container
from hosting.paas.scheduler import Strategy
from hosting.paas.tracked import Tracked
from tenants.enums import InstanceState
from tenants.models import Instance
from tests.unit.desired import desired_app

APP = desired_app("wrongport", app_id=1, port=9999, memory_mib=64)


def started(seconds_ago: float, state: InstanceState = InstanceState.STARTING) -> Tracked:
    return Tracked(
        id="abc123",
        app_id=APP.app_id,
        node="local",
        container_id="c0ffee",
        revision=1,
        state=state,
        endpoint="127.0.0.1:1",
        started_at=datetime.now(UTC) - timedelta(seconds=seconds_ago),
    )


def test_an_instance_never_healthy_in_its_start_period_is_stopped_with_the_reason() -> None:
    tracked = started(seconds_ago=5)

    assert not judge(APP, tracked, "refused", 0.0).stop
    assert tracked.state == InstanceState.STARTING
    assert tracked.message == (
        "waiting for its health check: GET /healthz on port 9999: connection refused (is the app listening on that "
        "port?)"
    )

    tracked.started_at = datetime.now(UTC) - timedelta(seconds=START_PERIOD_SECONDS + 1)
    verdict = judge(APP, tracked, "refused", 1.0)
    assert verdict.stop and tracked.state == InstanceState.UNHEALTHY
    assert tracked.message and tracked.message.startswith("not healthy 60 s after start: GET /healthz on port 9999")
    assert verdict.event and (verdict.event.action, verdict.event.detail["reason"]) == (
        "instance.unhealthy",
        "GET /healthz on port 9999: connection refused (is the app listening on that port?)",
    )

    # The next pass finds it stopped: a crash to record, restarted with backoff.
    exited = Container("local", "c0ffee", "acme", "wrongport", 1, "abc123", False, 143, None, None)
    observed = Observed([exited], {"abc123": tracked}, [], {})
    assert plan([APP], observed, 2.0, Strategy.SPREAD) == [Crashed(APP, exited, 1, 3.0, InstanceState.STARTING)]


def test_a_ready_instance_is_not_stopped_for_a_failure_or_two_however_old() -> None:
    tracked = started(seconds_ago=3600, state=InstanceState.READY)
    assert judge(APP, tracked, "HTTP 503", 0.0).event is None
    assert judge(APP, tracked, "HTTP 503", 1.0).event is None
    assert tracked.state == InstanceState.READY
    third = judge(APP, tracked, "HTTP 503", 2.0)  # unhealthy, not stopped yet
    assert not third.stop and third.event and third.event.action == "instance.unhealthy"
    assert tracked.state == InstanceState.UNHEALTHY
    assert tracked.message == "unhealthy: GET /healthz on port 9999: HTTP 503"
    assert not judge(APP, tracked, "HTTP 503", 60.0).stop
    assert judge(APP, tracked, "HTTP 503", 63.0).stop  # unhealthy for over a minute: stopped


def test_every_field_of_an_instance_row_is_tracked() -> None:
    """Adopting rows after a restart builds Tracked from them: a column it lacks failed every pass."""
    row = Instance(
        id="abc123",
        app_id=1,
        node="local",
        container_id="c0ffee",
        revision=2,
        state="ready",
        started_at=None,
        message="x",
    )
    tracked = Tracked.adopt(row)
    assert tracked.row().model_dump() == row.model_dump() and tracked.message == "x"


def test_an_instance_adopted_unhealthy_after_a_restart_is_restarted_a_minute_later() -> None:
    """What only memory held (since when it is unhealthy) is gone after a restart: timed afresh, not forever."""
    tracked = started(seconds_ago=3600, state=InstanceState.UNHEALTHY)
    assert tracked.unhealthy_since is None
    assert not judge(APP, tracked, "HTTP 503", 100.0).stop
    assert judge(APP, tracked, "HTTP 503", 161.0).stop
