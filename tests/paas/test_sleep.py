"""Apps that sleep when idle and wake on their first request, through the daemon's real front door: paused,
then stopped, never with a request in flight, and a burst at a sleeping app held only up to its bound."""

import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from tenants.enums import InstanceState
from tenants.schemas import AppSpec, TenantCreate
from tests.containers import inspect, ready, wait_for
from tests.harness import Daemon

HELLO = AppSpec(image="strata/hello", health_path="/healthz", memory_mib=64, idle_stop_seconds=2)
# An app whose /slow answers after 2 s (and anything else at once), for requests in flight across a sleep.
SLOW_HANDLER = (
    "read -r m t v; while read -r l; do [ ${#l} -le 1 ] && break; done;"
    ' case "$t" in /slow*) sleep 2;; esac;'
    " printf 'HTTP/1.1 200 OK\\r\\nContent-Length: 5\\r\\nConnection: close\\r\\n\\r\\nslow\\n'"
)
SLOW = HELLO.model_copy(
    update={
        "command": ["/bin/sh", "-c", 'echo "$HANDLER" > /tmp/h.sh; exec nc -ll -p 8080 -e /bin/sh /tmp/h.sh'],
        "env": {"HANDLER": SLOW_HANDLER},
        "idle_stop_seconds": 1,
    }
)


def get(daemon: Daemon, host: str, path: str = "/") -> httpx.Response:
    return httpx.get(f"http://{daemon.gateway}{path}", headers={"Host": host}, timeout=30)


def asleep(daemon: Daemon, tenant: str, app: str, state: InstanceState) -> bool:
    with daemon.operator() as api:
        found = api.instances(tenant, app)
    return bool(found) and all(i.state == state for i in found)


def deployed(daemon: Daemon, tenant: str, spec: AppSpec) -> str:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=tenant, plan="medium"))
        api.deploy(tenant, "web", spec)
    ready(daemon, tenant, "web", spec.replicas)
    host = f"web.{tenant}.localhost"
    wait_for(lambda: get(daemon, host).status_code == 200, what="a route")
    return host


def test_an_idle_app_is_paused_then_stopped_and_its_first_request_wakes_it(platform: Daemon, unique: str) -> None:
    host = deployed(platform, unique, HELLO)

    wait_for(lambda: asleep(platform, unique, "web", InstanceState.PAUSED), what="the app paused")
    (instance,) = ready_or_not(platform, unique)
    wait_for(lambda: inspect(instance)["State"]["Paused"], what="its container frozen")  # once drained
    woken = get(platform, host)
    assert woken.status_code == 200 and f"tenant={unique} app=web" in woken.text
    assert not inspect(instance)["State"]["Paused"]
    assert get(platform, host).status_code == 200  # awake: served directly

    wait_for(lambda: asleep(platform, unique, "web", InstanceState.STOPPED), timeout=40, what="the app stopped")
    assert not inspect(instance)["State"]["Running"]
    woken = get(platform, host)
    assert woken.status_code == 200 and f"tenant={unique} app=web" in woken.text
    with platform.operator() as api:
        app = api.app(unique, "web")
    assert app.sleep is not None and app.sleep.wakeups == 2 and app.sleep.state == "awake"
    listed = platform.cli("apps", "list", unique)
    assert listed.returncode == 0 and "WAKES" in listed.stdout.upper()
    auth = {"Authorization": f"Bearer {platform.operator_token}"}
    metrics = httpx.get(f"{platform.url}/metrics", headers=auth).text
    for woken_from in ("paused", "stopped"):
        assert f'strata_cold_start_seconds_count{{tenant="{unique}",from="{woken_from}"}} 1' in metrics


def test_a_burst_at_a_sleeping_app_holds_64_requests_and_refuses_the_rest_at_once(
    platform: Daemon, unique: str
) -> None:
    slow_start = HELLO.model_copy(
        update={"command": ["/bin/sh", "-c", "sleep 3; exec /bin/sh /app/entrypoint.sh"], "idle_stop_seconds": 1}
    )
    host = deployed(platform, unique, slow_start)
    wait_for(lambda: asleep(platform, unique, "web", InstanceState.STOPPED), timeout=40, what="the app stopped")

    connected = threading.Barrier(100)

    def request(_: int) -> bytes:
        with socket.create_connection(tuple(platform.gateway.split(":")), timeout=30) as client:  # type: ignore[arg-type]
            connected.wait()  # all at once, while the app wakes (3 s)
            client.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            return b"".join(iter(lambda: client.recv(65536), b""))

    started = time.monotonic()
    with ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(request, range(100)))
    statuses = Counter(a.split(b" ", 2)[1] for a in answers)
    assert statuses == {b"200": 64, b"503": 36}, statuses
    assert all(b"\r\nretry-after: " in a.lower() for a in answers if a.startswith(b"HTTP/1.1 503"))
    assert time.monotonic() - started < 20  # none hung


def test_a_request_in_flight_is_never_cut_by_a_pause(platform: Daemon, unique: str) -> None:
    host = deployed(platform, unique, SLOW)
    statuses: Counter[int] = Counter()
    for gap in (0.6, 0.9, 1.0, 1.1, 1.3, 1.6, 2.5):
        answer = get(platform, host, "/slow")
        statuses[answer.status_code] += 1
        assert answer.elapsed.total_seconds() < 4, answer.elapsed  # paused mid-answer, it would hang
        time.sleep(gap)
    assert statuses == {200: 7}
    wait_for(lambda: asleep(platform, unique, "web", InstanceState.PAUSED), what="the app paused")


def ready_or_not(daemon: Daemon, tenant: str) -> list[str]:
    with daemon.operator() as api:
        return [i.container_id for i in api.instances(tenant, "web")]
