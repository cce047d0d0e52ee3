"""Apps reached through the daemon's front door: routed as soon as ready, never a lost request in a roll, over
HTTPS too, and across a restart of the daemon."""

import json
import signal
import subprocess
import threading
import time
from collections import Counter

import httpx

from tenants.schemas import AppSpec, TenantCreate
from tests.containers import platform_id, ready, remove_everything_of, steady_requests, wait_for
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

    with platform.operator() as api:  # read from the access log, once a second
        traffic = wait_for(lambda: (t := api.traffic(unique, "web")).requests >= 8 and t, what="traffic")
        api.scale(unique, "web", 0)
    assert traffic.error_rate == 0.0 and traffic.p50_ms is not None
    stopped = wait_for(lambda: (r := through_gateway(platform, host)).status_code == 503 and r, what="503")
    assert stopped.headers["retry-after"]
    metrics = httpx.get(f"http://{platform.admin}/metrics").text  # HAProxy's exporter
    assert f'haproxy_backend_http_responses_total{{proxy="{unique}.web",code="2xx"}}' in metrics


def test_a_rolling_deploy_under_steady_load_loses_no_request(platform: Daemon, unique: str) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        api.deploy(unique, "web", HELLO)
    ready(platform, unique, "web", 2)
    host = f"web.{unique}.localhost"
    wait_for(lambda: through_gateway(platform, host).status_code == 200, what="a route")

    with steady_requests(platform, host, workers=4) as load:
        with platform.operator() as api:
            api.deploy(unique, "web", HELLO.model_copy(update={"env": {"RELEASE": "2"}}))
        ready(platform, unique, "web", 2, revision=2)
    assert set(load.statuses) == {200}, load.statuses
    assert load.statuses[200] > 100
    revisions = Counter(text.split("revision=")[1].split()[0] for text in load.texts.elements())
    assert revisions["1"] and revisions["2"]  # the load really spanned the roll


def test_https_with_the_local_ca_redirect_and_hsts_and_a_restart_that_fails_no_request(tmp_path, unique: str) -> None:  # type: ignore[no-untyped-def]
    """Over HTTPS from the local CA (`strata ca export`), HTTP/2, an app's redirect and HSTS; then the daemon
    restarts (SIGTERM, as a service manager does): HAProxy serves throughout, and the next daemon adopts it and
    issues no certificate again."""
    daemon = start_daemon(tmp_path / "home", local_node=True, extra=("--gateway-workers", "2"))
    ca = tmp_path / "ca.pem"
    try:
        with daemon.operator() as api:
            assert api.bootstrap_images()
            api.create_tenant(TenantCreate(name=unique, plan="medium"))
        deployed = daemon.cli("apps", "deploy", f"{unique}/web", "--image", "strata/hello", "--replicas", "2",
                              "--memory", "64", "--https-redirect", "--hsts", "--detach")  # fmt: skip
        assert deployed.returncode == 0, deployed.stderr
        ready(daemon, unique, "web", 2)
        exported = daemon.cli("ca", "export")
        assert exported.returncode == 0 and exported.stdout.startswith("-----BEGIN CERTIFICATE-----")
        ca.write_text(exported.stdout)
        host, port = f"web.{unique}.localhost", daemon.https.split(":")[1]

        def https(*flags: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["curl", "-sS", "--max-time", "5", "--cacert", str(ca), "--resolve", f"{host}:{port}:127.0.0.1",
                 "-D", "-", *flags, f"https://{host}:{port}/"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip

        answer = wait_for(lambda: (a := https("--http2")).returncode == 0 and a, what="a certificate")
        assert answer.stdout.startswith("HTTP/2 200") and f"tenant={unique} app=web" in answer.stdout
        assert "strict-transport-security: max-age=31536000" in answer.stdout.lower()
        plain = through_gateway(daemon, host)
        assert plain.status_code == 308 and plain.headers["location"] == f"https://{host}:{port}/"
        listed = daemon.cli("certs", "list", "--json")
        certificates = {c["hostname"]: c for c in json.loads(listed.stdout)}
        assert certificates[host]["source"] == "local" and certificates[host]["last_error"] is None
        assert "haproxy_process_nbthread 2" in httpx.get(f"http://{daemon.admin}/metrics").text

        pid = daemon.front_door_pid()
        failures: list[str] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                result = https()
                if result.returncode != 0 or not result.stdout.startswith("HTTP/2 200"):
                    failures.append(result.stderr or result.stdout[:80])

        loader = threading.Thread(target=load)
        loader.start()
        try:
            daemon.process.send_signal(signal.SIGTERM)
            assert daemon.process.wait(timeout=15) == 0
            time.sleep(1)  # no daemon: HAProxy serves on
            daemon = start_daemon(tmp_path / "home", daemon.port, local_node=True, like=daemon,
                                  extra=("--gateway-workers", "2"))  # fmt: skip
            time.sleep(1)
        finally:
            stop.set()
            loader.join()
        assert failures == []
        assert daemon.front_door_pid() == pid  # adopted, not started anew
        listed_again = json.loads(daemon.cli("certs", "list", "--json").stdout)
        assert [c["not_after"] for c in listed_again] == [c["not_after"] for c in certificates.values()]
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
