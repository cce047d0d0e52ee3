"""From `git push` to the new revision serving, against `docker build` + `docker run` of the same context in
the same run; and the gateway's p99 for another app while a CPU-bound build runs, against its idle p99.

    .venv/bin/python bench/build.py [--runs 3]

Per run: a cold push (a new app: its first build, a RUN step no cache holds) and a warm one (a one-line change
of its page: the RUN step comes from the cache), each timed until the gateway answers with the new page; the
baseline builds the same context with `docker build` (the legacy builder, as the platform uses), then
`docker run`s it with its port on 127.0.0.1 and times it until it answers with the new page. Goals (issue
15): ≤ 1.2x the baseline; a warm redeploy ≤ 10 s; the other app's p99 during a build ≤ 2x its idle p99.

Needs a Docker engine, git and an OpenSSH client. Everything it starts — a daemon in a temporary
STRATA_HOME with its containers, the baseline's containers and images — it removes again.
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import strata_daemon

from tenants.client import StrataClient
from tenants.schemas import AppSpec, TenantCreate

TENANT = "bench"
PLAN = "medium"  # a build capped at 1 CPU of this machine's 2: the gateway keeps the other
TIMEOUT_SECONDS = 180  # for any one thing to happen
BUILD_LEAD_SECONDS = 3  # from a push to its build's RUN step running
PROBE_RATE = 50  # requests per second to the other app, idle and during a build
POLL_SECONDS = 0.02
SSH_OPTIONS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"
# A RUN step that works ~1 s (a nonce keeps any cache from holding it), then the page.
DOCKERFILE = """\
FROM strata/static
RUN echo {nonce} && i=0 && while [ $i -lt 200000 ]; do i=$((i+1)); done
COPY index.html /www/index.html
"""
# A build that keeps one CPU busy for `seconds` (the plan caps it), for the p99 under a build.
BUSY_DOCKERFILE = """\
FROM strata/static
RUN echo {nonce} && timeout {seconds} sh -c 'while :; do :; done' || true
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=TIMEOUT_SECONDS
    ).stdout.strip()


def wait_answering(url: str, host: str | None, body: str, since: float) -> float:
    """Seconds from `since` until GET `url` answers 200 with `body` in it."""
    headers = {"Host": host} if host else {}
    while time.perf_counter() - since < TIMEOUT_SECONDS:
        try:
            answer = httpx.get(url, headers=headers, timeout=2)
            if answer.status_code == 200 and body in answer.text:
                return time.perf_counter() - since
        except httpx.HTTPError:
            pass
        time.sleep(POLL_SECONDS)
    raise SystemExit(f"{host or url} did not answer with {body!r} in {TIMEOUT_SECONDS}s")


def write_context(directory: Path, page: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text(DOCKERFILE.format(nonce=uuid.uuid4().hex))
    (directory / "index.html").write_text(page)


class Baseline:
    """`docker build` then `docker run` of the context, until it answers with the page."""

    def __init__(self) -> None:
        self.containers: list[str] = []
        self.images: list[str] = []

    def deploy(self, context: Path, page: str) -> float:
        tag = f"strata-bench-build:{uuid.uuid4().hex[:8]}"
        start = time.perf_counter()
        run("docker", "build", "-q", "-t", tag, context, env={**os.environ, "DOCKER_BUILDKIT": "0"})
        self.images.append(tag)
        container = run("docker", "run", "-d", "-e", "PORT=8080", "-p", "127.0.0.1::8080", tag)
        self.containers.append(container)
        port = run("docker", "port", container, "8080/tcp").splitlines()[0].rsplit(":", 1)[1]
        return wait_answering(f"http://127.0.0.1:{port}/", None, page, start)

    def clean(self) -> None:
        if self.containers:
            subprocess.run(["docker", "rm", "-f", *self.containers], capture_output=True, check=False)
        if self.images:
            subprocess.run(["docker", "rmi", *self.images], capture_output=True, check=False)


class Pusher:
    """`git push` of a context over the platform's SSH server, timed until the gateway serves its page."""

    def __init__(self, ssh_port: int, key: Path, gateway: int) -> None:
        self.gateway = gateway
        self.env = {**os.environ, "GIT_SSH_COMMAND": f"ssh -i {key} {SSH_OPTIONS}"}
        self.remote = f"ssh://{TENANT}@127.0.0.1:{ssh_port}"

    def deploy(self, context: Path, app: str, page: str) -> float:
        self.commit(context, page)
        start = time.perf_counter()
        run(*self.push(context, app), cwd=context, env=self.env)
        host = f"{app}.{TENANT}.localhost"
        return wait_answering(f"http://127.0.0.1:{self.gateway}/", host, page, start)

    def push(self, context: Path, app: str) -> list[str]:
        return ["git", "push", "-q", f"{self.remote}/{app}", "main"]

    @staticmethod
    def commit(context: Path, message: str) -> None:
        if not (context / ".git").exists():
            run("git", "init", "-q", "-b", "main", cwd=context)
            run("git", "config", "user.email", "bench@strata.invalid", cwd=context)
            run("git", "config", "user.name", "bench", cwd=context)
        run("git", "add", "-A", cwd=context)
        run("git", "commit", "-q", "-m", message, cwd=context)


def p99_ms(gateway: int, app: str, seconds: float) -> float:
    """The p99 latency of GETs to `app` through the gateway at a steady PROBE_RATE (not saturating: a saturated
    app's latency is its queue, not the platform's); every request must succeed."""
    latencies = []
    with httpx.Client(base_url=f"http://127.0.0.1:{gateway}", headers={"Host": f"{app}.{TENANT}.localhost"}) as http:
        start = time.perf_counter()
        for number in range(int(seconds * PROBE_RATE)):
            time.sleep(max(0.0, start + number / PROBE_RATE - time.perf_counter()))
            sent = time.perf_counter()
            answer = http.get("/", timeout=5)
            if answer.status_code != 200:
                raise SystemExit(f"a request to {app} failed during the probe: HTTP {answer.status_code}")
            latencies.append((time.perf_counter() - sent) * 1000)
    return statistics.quantiles(latencies, n=100)[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--load-seconds", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="strata-bench-build-") as scratch:
        tmp = Path(scratch)
        home, gateway, ssh_port = tmp / "home", free_port(), free_port()
        daemon = strata_daemon.start(
            home, "--local-node", "--gateway", f"127.0.0.1:{gateway}",
            "--gateway-admin", f"127.0.0.1:{free_port()}", "--ssh", f"127.0.0.1:{ssh_port}",
        )  # fmt: skip
        baseline = Baseline()
        platform = (home / "platform-id").read_text().strip()
        try:
            token = (home / "operator.token").read_text().strip()
            key = tmp / "tenant-key"
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
            env = {**os.environ, "STRATA_HOME": str(home)}
            with StrataClient(socket=home / "api.sock", token=token, timeout=TIMEOUT_SECONDS) as client:
                client.bootstrap_images()
                client.create_tenant(TenantCreate(name=TENANT, plan=PLAN))
                run(sys.executable, "-m", "strata", "keys", "add", "--tenant", TENANT, f"{key}.pub", env=env)
                pusher = Pusher(ssh_port, key, gateway)
                rows = []
                for number in range(args.runs):
                    page = f"cold {number} {uuid.uuid4().hex}"
                    write_context(tmp / f"base{number}", page)
                    write_context(tmp / f"push{number}", page)
                    cold = (
                        baseline.deploy(tmp / f"base{number}", page),
                        pusher.deploy(tmp / f"push{number}", f"w{number}", page),
                    )
                    page = f"warm {number} {uuid.uuid4().hex}"
                    for context in (tmp / f"base{number}", tmp / f"push{number}"):
                        (context / "index.html").write_text(page)
                    warm = (
                        baseline.deploy(tmp / f"base{number}", page),
                        pusher.deploy(tmp / f"push{number}", f"w{number}", page),
                    )
                    rows.append((cold, warm))
                for label, index in (("cold", 0), ("warm", 1)):
                    base = statistics.median(row[index][0] for row in rows)
                    push = statistics.median(row[index][1] for row in rows)
                    print(
                        f"{label}: baseline docker build + run, answering {base * 1000:6.0f} ms | "
                        f"strata: git push, serving {push * 1000:6.0f} ms ({push / base:4.2f}x baseline)"
                    )

                client.deploy(TENANT, "other", AppSpec(image="strata/hello", replicas=1, health_path="/healthz"))
                wait_answering(
                    f"http://127.0.0.1:{gateway}/healthz", f"other.{TENANT}.localhost", "", time.perf_counter()
                )
                idle = p99_ms(gateway, "other", args.load_seconds)
                busy = tmp / "busy"
                busy.mkdir()
                dockerfile = BUSY_DOCKERFILE.format(
                    nonce=uuid.uuid4().hex, seconds=args.load_seconds + BUILD_LEAD_SECONDS
                )
                (busy / "Dockerfile").write_text(dockerfile)
                (busy / "index.html").write_text("busy")
                pusher.commit(busy, "busy")
                build = subprocess.Popen(pusher.push(busy, "busy"), cwd=busy, env=pusher.env, stderr=subprocess.PIPE)
                time.sleep(BUILD_LEAD_SECONDS)  # its RUN step is running by now
                loaded = p99_ms(gateway, "other", args.load_seconds)
                build.communicate(timeout=TIMEOUT_SECONDS)
                print(
                    f"gateway p99 for another app: idle {idle:.1f} ms, during a CPU-bound build {loaded:.1f} ms "
                    f"({loaded / idle:4.2f}x idle; the build capped at the {PLAN} plan's CPU)"
                )
        finally:
            baseline.clean()
            daemon.send_signal(signal.SIGINT)
            daemon.wait(timeout=30)
            leftovers = run("docker", "ps", "-aq", f"--filter=label=strata.platform={platform}").split()
            if leftovers:
                run("docker", "rm", "-f", *leftovers)
            networks = run("docker", "network", "ls", "-q", f"--filter=label=strata.platform={platform}").split()
            if networks:
                run("docker", "network", "rm", *networks)
            built = run("docker", "images", "-q", f"--filter=reference=strata-build/{TENANT}/*").split()
            if built:
                subprocess.run(["docker", "rmi", "-f", *set(built)], capture_output=True, check=False)


if __name__ == "__main__":
    main()
