"""Apps reached through the daemon's gateway: routed as soon as ready, and never a lost request in a roll."""

import threading
import time
from collections import Counter

import httpx

from tenants.schemas import AppSpec, TenantCreate
from tests.containers import platform_id, ready, remove_everything_of, wait_for
from tests.harness import Daemon, start_daemon

HELLO = AppSpec(image="strata/hello", replicas=2, health_path="/healthz", memory_mib=64)


def through_gateway(daemon: Daemon, host: str, path: str = "/") -> httpx.Response:
    return httpx.get(f"http://{daemon.gateway}{path}", headers={"Host": host}, timeout=10)


def test_a_deployed_app_answers_through_the_gateway_and_reports_its_traffic(platform: Daemon, unique: str) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        api.deploy(unique, "web", HELLO.model_copy(update={"hostnames": [f"{unique}.example.com"]}))
    instances = {i.id for i in ready(platform, unique, "web", 2)}
    host = f"web.{unique}.localhost"
    answered = wait_for(lambda: (r := through_gateway(platform, host)).status_code == 200 and r, what="a route")
    assert f"tenant={unique} app=web revision=1" in answered.text
    seen = {through_gateway(platform, host).text.split("instance=")[1].strip() for _ in range(6)}
    assert seen == instances  # both instances serve
    assert through_gateway(platform, f"{unique}.example.com").status_code == 200

    with platform.operator() as api:
        traffic = api.traffic(unique, "web")
        api.scale(unique, "web", 0)
    assert traffic.requests >= 8 and traffic.error_rate == 0.0
    stopped = wait_for(lambda: (r := through_gateway(platform, host)).status_code == 503 and r, what="503")
    assert stopped.headers["retry-after"]
    metrics = httpx.get(f"http://{platform.admin}/metrics").text
    assert f'strata_gateway_requests_total{{tenant="{unique}",app="web",code="2xx"}}' in metrics


def test_a_rolling_deploy_under_steady_load_loses_no_request(platform: Daemon, unique: str) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        api.deploy(unique, "web", HELLO)
    ready(platform, unique, "web", 2)
    host = f"web.{unique}.localhost"
    wait_for(lambda: through_gateway(platform, host).status_code == 200, what="a route")

    statuses: Counter[int | str] = Counter()
    revisions: Counter[str] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            deadline = time.monotonic() + 90  # bounded, whatever happens
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    answer = client.get(f"http://{platform.gateway}/", headers={"Host": host})
                    statuses[answer.status_code] += 1
                    revisions[answer.text.split("revision=")[1].split()[0] if answer.status_code == 200 else "-"] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.5)
        with platform.operator() as api:
            api.deploy(unique, "web", HELLO.model_copy(update={"env": {"RELEASE": "2"}}))
        ready(platform, unique, "web", 2, revision=2)
        time.sleep(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert set(statuses) == {200}, statuses
    assert statuses[200] > 100
    assert revisions["1"] and revisions["2"]  # the load really spanned the roll


def test_gateway_workers_share_the_port_and_the_routes(tmp_path, unique: str) -> None:  # type: ignore[no-untyped-def]
    daemon = start_daemon(tmp_path / "home", local_node=True, extra=("--gateway-workers", "3"))
    try:
        with daemon.operator() as api:
            assert api.bootstrap_images()
            api.create_tenant(TenantCreate(name=unique, plan="medium"))
            api.deploy(unique, "web", HELLO)
        ready(daemon, unique, "web", 2)
        host = f"web.{unique}.localhost"
        wait_for(lambda: all(through_gateway(daemon, host).status_code == 200 for _ in range(10)), what="routes")
        answers = [through_gateway(daemon, host).status_code for _ in range(60)]  # a new connection each
        with daemon.operator() as api:
            seen_by_the_daemons_own_gateway = api.traffic(unique, "web").requests
        assert answers == [200] * 60
        assert seen_by_the_daemons_own_gateway < 60  # the other workers, fed the same routes, served the rest
    finally:
        assert daemon.stop() == 0
        remove_everything_of(platform_id(daemon))


def test_instances_report_the_cpu_and_memory_they_use(platform: Daemon, unique: str) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        api.deploy(unique, "web", HELLO.model_copy(update={"replicas": 1}))
    ready(platform, unique, "web", 1)

    def sampled():  # type: ignore[no-untyped-def]
        with platform.operator() as api:
            [instance] = api.instances(unique, "web")
        return instance if instance.memory_mib_used is not None else None

    instance = wait_for(sampled, timeout=40, what="a usage sample")  # two samples, 10 s apart
    assert 0 < instance.memory_mib_used <= 64
    assert 0 <= instance.cpu_millicores_used <= 250
