"""Deploy latency: from `apps deploy` to the first ready instance and to all N ready, for N = 1 and 10,
against the baseline of `docker run` of the same image until it answers HTTP, measured in the same run.

    .venv/bin/python bench/deploy.py [--runs 3]

Needs a Docker engine (run it under `.ci/with-dockerd` if none runs). Everything it starts — a daemon in a
temporary STRATA_HOME, its containers, the baseline containers — it removes again.
"""

import argparse
import signal
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import strata_daemon

from tenants.client import StrataClient
from tenants.schemas import AppSpec, TenantCreate

POLL_SECONDS = 0.02
TIMEOUT_SECONDS = 120
IMAGE = "strata/hello"


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()


def docker_run_until_answering() -> float:
    """`docker run -d` with a loopback port, then poll until HTTP answers (its removal is not timed)."""
    start = time.perf_counter()
    container = docker("run", "-d", "--rm", "-p", "127.0.0.1::8080", IMAGE)
    try:
        port = docker("port", container, "8080/tcp").split(":")[-1]
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            time.sleep(POLL_SECONDS)
    finally:
        docker("rm", "-f", container)


def docker_runs_until_answering(count: int) -> float:
    """One baseline sample for N: N `docker run`s started at once, until all of them answer."""
    with ThreadPoolExecutor(count) as pool:
        return max(pool.map(lambda _: docker_run_until_answering(), range(count)))


def deploy_until_ready(client: StrataClient, app: str, replicas: int) -> tuple[float, float]:
    """Seconds from the deploy request to the first ready instance, and to all `replicas` ready."""
    start = time.perf_counter()
    client.deploy("bench", app, AppSpec(image=IMAGE, replicas=replicas, health_path="/healthz"))
    first = None
    while time.perf_counter() - start < TIMEOUT_SECONDS:
        ready = sum(1 for instance in client.instances("bench", app) if instance.state == "ready")
        now = time.perf_counter() - start
        if ready and first is None:
            first = now
        if ready == replicas:
            return first or now, now
        time.sleep(POLL_SECONDS)
    raise SystemExit(f"{app} did not get {replicas} ready instances in {TIMEOUT_SECONDS}s")


def wait_removed(client: StrataClient, platform: str) -> None:
    while docker("ps", "-aq", f"--filter=label=strata.platform={platform}"):
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        daemon = strata_daemon.start(home, "--local-node")
        platform = ""
        try:
            token = (home / "operator.token").read_text().strip()
            platform = (home / "platform-id").read_text().strip()
            with StrataClient(socket=home / "api.sock", token=token) as client:
                client.bootstrap_images()
                client.create_tenant(TenantCreate(name="bench", plan="large"))
                for replicas in (1, 10):
                    baseline = statistics.median(docker_runs_until_answering(replicas) for _ in range(args.runs))
                    samples = []
                    for run in range(args.runs):
                        app = f"n{replicas}-{run}"
                        samples.append(deploy_until_ready(client, app, replicas))
                        client.delete_app("bench", app)
                        wait_removed(client, platform)
                    first = statistics.median(s[0] for s in samples)
                    every = statistics.median(s[1] for s in samples)
                    print(
                        f"N={replicas:>2}: baseline {replicas} x docker run, all answering {baseline * 1000:6.0f} ms | "
                        f"strata: first ready {first * 1000:6.0f} ms, all ready {every * 1000:6.0f} ms "
                        f"({every / baseline:4.2f}x baseline)"
                    )
        finally:
            daemon.send_signal(signal.SIGINT)
            daemon.wait(timeout=30)
            if platform:
                leftovers = docker("ps", "-aq", f"--filter=label=strata.platform={platform}").split()
                if leftovers:
                    docker("rm", "-f", *leftovers)
                networks = docker("network", "ls", "-q", f"--filter=label=strata.platform={platform}").split()
                if networks:
                    docker("network", "rm", *networks)


if __name__ == "__main__":
    main()
