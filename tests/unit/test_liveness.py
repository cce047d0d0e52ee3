"""The reconciler's liveness decisions on one instance: when a failing health check makes it unhealthy, when it is
stopped to be restarted, and what its message says meanwhile (no engine: the decisions alone)."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from hosting.paas.reconciler import START_PERIOD_SECONDS, Reconciler, Tracked, _Pass
from hosting.paas.runtime import Container
from tenants.enums import InstanceState
from tenants.instances import DesiredApp

APP = DesiredApp(
    tenant="acme",
    isolation="shared",
    app_id=1,
    name="wrongport",
    revision=1,
    replicas=1,
    image="strata/hello",
    command=None,
    port=9999,
    cpu_millicores=250,
    memory_mib=64,
    env={},
    health_path="/healthz",
    hostnames=[],
    requests_per_second=100,
    burst=200,
    max_body_mib=10,
)


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


def test_an_instance_never_healthy_in_its_start_period_is_stopped_with_the_reason(engine: Engine) -> None:
    reconciler, work = Reconciler(engine, "platform", []), _Pass()
    tracked = reconciler.tracked["abc123"] = started(seconds_ago=5)

    assert not reconciler._judge(APP, tracked, "refused", 0.0, work)
    assert tracked.state == InstanceState.STARTING
    assert tracked.message == (
        "waiting for its health check: GET /healthz on port 9999: connection refused (is the app listening on that "
        "port?)"
    )

    tracked.started_at = datetime.now(UTC) - timedelta(seconds=START_PERIOD_SECONDS + 1)
    assert reconciler._judge(APP, tracked, "refused", 1.0, work)  # stop it
    assert tracked.state == InstanceState.UNHEALTHY
    assert tracked.message and tracked.message.startswith("not healthy 60 s after start: GET /healthz on port 9999")
    assert [(e.action, e.detail["reason"]) for e in work.events] == [
        ("instance.unhealthy", "GET /healthz on port 9999: connection refused (is the app listening on that port?)")
    ]

    # The next pass finds it stopped: restarted with backoff as a crash is, the reason kept.
    exited = Container("local", "c0ffee", "acme", "wrongport", 1, "abc123", False, 143, None, None)
    assert reconciler._crashed(APP, exited, work) == []
    assert tracked.restart_at is not None and tracked.crashes == 1
    assert tracked.message.endswith("; restarted once") and "not healthy 60 s after start" in tracked.message


def test_a_ready_instance_is_not_stopped_for_a_failure_or_two_however_old(engine: Engine) -> None:
    reconciler, work = Reconciler(engine, "platform", []), _Pass()
    tracked = started(seconds_ago=3600, state=InstanceState.READY)
    assert not reconciler._judge(APP, tracked, "HTTP 503", 0.0, work)
    assert not reconciler._judge(APP, tracked, "HTTP 503", 1.0, work)
    assert tracked.state == InstanceState.READY and not work.events
    assert not reconciler._judge(APP, tracked, "HTTP 503", 2.0, work)  # the third: unhealthy, not stopped yet
    assert tracked.state == InstanceState.UNHEALTHY
    assert tracked.message == "unhealthy: GET /healthz on port 9999: HTTP 503"
    assert reconciler._judge(APP, tracked, "HTTP 503", 70.0, work)  # unhealthy for over a minute: stopped
