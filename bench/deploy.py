"""Deploy latency of the platform against `docker run` of the same image, measured in the same run.

From `apps deploy` to the first and to all N instances ready, N = 1 and 10; the baseline is N `docker run`s
until all answer /healthz. It runs them on a bridge network of its own, as the platform runs each tenant's
(Docker's default bridge can be unreachable: a stale interface on its subnet takes its route), with PORT
set and the port published on 127.0.0.1. Every wait is bounded, so a container that never answers ends the
run with the reason instead of hanging it.

    .venv/bin/python bench/deploy.py [--runs 3]      (short: --runs 1)

Needs a Docker engine (run it under `.ci/with-dockerd` if none runs). Everything it starts — a daemon in a
temporary STRATA_HOME, its containers, the baseline's network and containers — it removes again.
"""

import argparse
import os
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
TIMEOUT_SECONDS = 120  # for any one thing to happen: a container to answer, N to be ready, all to go
DOCKER_TIMEOUT_SECONDS = 60  # for one docker command
IMAGE = "strata/hello"
PORT = 8080
BASELINE_NETWORK = f"strata-bench-{os.getpid()}"


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=DOCKER_TIMEOUT_SECONDS
    ).stdout.strip()


def docker_run_until_answering() -> float:
    """`docker run -d` with a loopback port, then poll until HTTP answers (its removal is not timed)."""
    start = time.perf_counter()
    container = docker(
        "run", "-d", "--rm", "--network", BASELINE_NETWORK, "-e", f"PORT={PORT}", "-p", f"127.0.0.1::{PORT}", IMAGE
    )
    try:
        port = docker("port", container, f"{PORT}/tcp").split(":")[-1]
        while time.perf_counter() - start < TIMEOUT_SECONDS:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            time.sleep(POLL_SECONDS)
        raise SystemExit(f"baseline: {IMAGE} on 127.0.0.1:{port} did not answer /healthz in {TIMEOUT_SECONDS}s")
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


def wait_removed(platform: str) -> None:
    deadline = time.perf_counter() + TIMEOUT_SECONDS
    while docker("ps", "-aq", f"--filter=label=strata.platform={platform}"):
        if time.perf_counter() > deadline:
            raise SystemExit(f"the platform's containers were not removed in {TIMEOUT_SECONDS}s")
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
            docker("network", "create", BASELINE_NETWORK)
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
                        wait_removed(platform)
                    first = statistics.median(s[0] for s in samples)
                    every = statistics.median(s[1] for s in samples)
                    print(
                        f"N={replicas:>2}: baseline {replicas} x docker run, all answering {baseline * 1000:6.0f} ms | "
                        f"strata: first ready {first * 1000:6.0f} ms, all ready {every * 1000:6.0f} ms "
                        f"({every / baseline:4.2f}x baseline)"
                    )
        finally:
            subprocess.run(["docker", "network", "rm", BASELINE_NETWORK], capture_output=True, check=False)
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
