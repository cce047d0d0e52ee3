"""Usage metering checked against ground truth, with real containers, the real daemon and the real front door:
a container burning half a CPU for 20 s is metered at 10 CPU-s; requests and bytes are what the client sent and
received; the counters never go down and never count twice across a container's and the daemon's restart."""

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import httpcore
import httpx
import pytest

from hosting.paas.cgroups import CGROUP_ROOT, Layout, read_files
from tenants.enums import InstanceState
from tenants.schemas import AppSpec, TenantCreate, UsageLine
from tests.containers import docker, platform_id, ready, remove_everything_of, wait_for
from tests.harness import Daemon, start_daemon
from tests.paas.test_reconciler import HELLO
from tests.paas.test_sleep import asleep

INTERVAL = 10  # the meter's (hosting.paas.usage.USAGE_INTERVAL_SECONDS)
BURN_SECONDS = 20
# busybox httpd answers the TCP health check; the loop burns what the CPU limit lets it for 20 s, timed by the
# kernel (`time -p`: the rusage of the loop), then the container idles so that its cgroup stays to be read
BURN = [
    "/bin/sh",
    "-c",
    f"httpd -p 8080 -h /www; time -p timeout {BURN_SECONDS} sh -c 'while :; do :; done'; exec sleep 3600",
]
BURNER = AppSpec(image="strata/static", command=BURN, replicas=1, cpu_millicores=500, memory_mib=32)
SLEEPING = (InstanceState.PAUSED, InstanceState.STOPPED)
SPINNER = BURNER.model_copy(update={"command": ["/bin/sh", "-c", "httpd -p 8080 -h /www; while :; do :; done"]})


def usage(daemon: Daemon, tenant: str, app: str) -> UsageLine | None:
    with daemon.operator() as api:
        lines = [line for line in api.usage(tenant).lines if line.app == app]
    return lines[0] if lines else None


def cpu(daemon: Daemon, tenant: str, app: str) -> float:
    line = usage(daemon, tenant, app)
    return line.cpu_seconds if line else 0.0


def errors_of(container_id: str) -> str:
    """The container's stderr, where `time -p` reports."""
    return subprocess.run(["docker", "logs", container_id], capture_output=True, text=True, check=True).stderr


def burned_seconds(container_id: str) -> float:
    """What the loop used, as the kernel counted it for its process (`time -p`'s user + sys)."""
    report = errors_of(container_id)
    return sum(float(match[1]) for match in re.finditer(r"^(?:user|sys) ([\d.]+)$", report, re.M))


def test_a_container_burning_half_a_cpu_for_20_s_is_metered_at_10_cpu_seconds(platform: Daemon, unique: str) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        api.deploy(unique, "burn", BURNER)
    [instance] = ready(platform, unique, "burn", 1)
    wait_for(lambda: "real" in errors_of(instance.container_id), timeout=60, what="the burn to end")
    truth = burned_seconds(instance.container_id)
    time.sleep(INTERVAL + 2)  # a sample after the burn ended, and its flush

    metered = wait_for(lambda: cpu(platform, unique, "burn") or None, timeout=2 * INTERVAL, what="a metered sample")
    print(f"\nmetered {metered:.3f} CPU-s; the loop's own rusage {truth:.3f} s; asked for {BURN_SECONDS * 0.5} s")
    assert metered == pytest.approx(truth, rel=0.02)  # the meter against the kernel's count of the loop
    if truth >= BURN_SECONDS * 0.5 * 0.98:  # the machine gave the loop its half CPU (busy, it got 8.4 s once here)
        assert metered == pytest.approx(BURN_SECONDS * 0.5, rel=0.02)
    line = usage(platform, unique, "burn")
    assert line is not None and line.node_kind == "shared" and line.instance_hours > 0 and line.memory_mib_hours > 0


class _Counted(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, counts: "Counting") -> None:
        self.stream, self.counts = stream, counts

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self.stream.read(max_bytes, timeout)
        self.counts.received += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, timeout)
        self.counts.sent += len(buffer)

    def close(self) -> None:
        self.stream.close()

    def get_extra_info(self, info: str) -> object:
        return self.stream.get_extra_info(info)


class Counting(httpcore.NetworkBackend):
    """httpx's connections, counting them and every byte the client writes and reads."""

    def __init__(self) -> None:
        self.sent = self.received = self.connections = 0
        self.backend = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # type: ignore[no-untyped-def]
        self.connections += 1
        return _Counted(self.backend.connect_tcp(host, port, timeout, local_address, socket_options), self)


def test_requests_and_bytes_are_what_the_client_sent_and_received(platform: Daemon, unique: str) -> None:
    """Over one keep-alive connection: a GET the activator holds while it wakes the sleeping app, GETs, bodies
    with a Content-Length and a chunked one, and a 404 of the front door's own for an unknown host (no one's
    usage) before one more GET. The app is metered every byte that crossed the client's socket for its requests,
    but for what HAProxy 2.6 keeps from no one (README, usage metering): the `Connection: keep-alive` httpx
    sends with each request, and each data chunk's size line and CRLF."""
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        api.deploy(unique, "web", HELLO.model_copy(update={"replicas": 1, "idle_stop_seconds": 2}))
    ready(platform, unique, "web", 1)
    host = f"web.{unique}.localhost"
    wait_for(
        lambda: httpx.get(f"http://{platform.gateway}/", headers={"Host": host}).status_code == 200, what="a route"
    )

    def answered() -> bool:
        line = usage(platform, unique, "web")
        return line is not None and line.requests > 0

    wait_for(answered, timeout=2 * INTERVAL, what="the route's first answer metered")
    wait_for(lambda: any(asleep(platform, unique, "web", state) for state in SLEEPING), what="the app asleep")
    time.sleep(INTERVAL + 1)  # every earlier request metered: a 503 before the route was ready may come a flush later
    before = usage(platform, unique, "web")
    assert before is not None

    counting = Counting()
    transport = httpx.HTTPTransport()
    transport._pool = httpcore.ConnectionPool(network_backend=counting)  # the one seam httpx has for its sockets
    chunks = [b"y" * 1000] * 3
    with httpx.Client(transport=transport, base_url=f"http://{platform.gateway}", headers={"Host": host}) as client:
        statuses = [client.get("/").status_code]  # held by the activator while the app wakes
        statuses += [client.get("/").status_code for _ in range(19)]
        statuses += [client.post("/echo", content=b"x" * 5000).status_code for _ in range(5)]
        statuses.append(client.post("/echo", content=iter(chunks)).status_code)
        sent, received = counting.sent, counting.received
        assert client.get("/", headers={"Host": "nowhere.localhost"}).status_code == 404
        nobodys = counting.sent - sent, counting.received - received
        statuses.append(client.get("/").status_code)
    assert statuses == [200] * 27 and counting.connections == 1
    with platform.operator() as api:
        sleep = api.app(unique, "web").sleep
    assert sleep is not None and sleep.wakeups == 1

    def metered() -> UsageLine | None:
        line = usage(platform, unique, "web")
        return line if line is not None and line.requests - before.requests >= 27 else None

    after = wait_for(metered, timeout=3 * INTERVAL, what="the requests metered")
    read, written = after.bytes_in - before.bytes_in, after.bytes_out - before.bytes_out
    unmetered = len(b"Connection: keep-alive\r\n") * 27 + sum(len(b"%x\r\n\r\n" % len(c)) for c in chunks)
    truth = counting.sent - nobodys[0] - unmetered, counting.received - nobodys[1]
    print(f"\nmetered in {read} out {written}; the client sent {truth[0]} and received {truth[1]} for the app")
    assert after.requests - before.requests == 27
    assert (read, written) == truth


def test_usage_never_goes_down_nor_counts_twice_across_a_container_and_a_daemon_restart(
    tmp_path: Path, unique: str
) -> None:
    home = tmp_path / "home"
    daemon = start_daemon(home, local_node=True)
    platform = platform_id(daemon)
    seen: list[float] = []

    def grown(beyond: float) -> float | None:
        seen.append(cpu(daemon, unique, "spin"))
        return seen[-1] if seen[-1] > beyond else None

    try:
        with daemon.operator() as api:
            api.create_tenant(TenantCreate(name=unique, plan="medium"))
            api.deploy(unique, "spin", SPINNER)
        began = time.monotonic()
        [instance] = ready(daemon, unique, "spin", 1)
        first = wait_for(lambda: grown(0), timeout=3 * INTERVAL, what="a first metered sample")

        docker("kill", instance.container_id)  # a crash: the platform starts it again, its cgroup from zero
        wait_for(lambda: ready(daemon, unique, "spin", 1)[0].restarts == 1, timeout=30, what="the restart")
        second = wait_for(lambda: grown(first), timeout=3 * INTERVAL, what="usage after the restart")

        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(timeout=10)
        daemon = start_daemon(home, daemon.port, local_node=True, like=daemon)
        wait_for(lambda: grown(second + INTERVAL * 0.5 * 0.5), timeout=4 * INTERVAL, what="usage after the daemon's")

        assert seen == sorted(seen)  # monotonic, every reading
        bound = 0.5 * (time.monotonic() - began)  # half a CPU at most since it was deployed: a double count shows
        print(f"\nmetered {seen[-1]:.1f} CPU-s of at most {bound:.1f} over {len(seen)} readings")
        assert seen[-1] <= bound * 1.02
    finally:
        daemon.stop()
        remove_everything_of(platform)


def cgroup_cpu_seconds(container_id: str) -> float:
    """The container's CPU counter as its cgroup holds it (the ground truth the meter differences)."""
    layout = Layout.of(json.loads(docker("info", "--format", "{{json .}}")))
    counters = layout.counters([container_id], read_files(CGROUP_ROOT, layout.files(container_id)))
    return counters[container_id].cpu_ns / 1e9


def test_the_cpu_a_container_used_while_the_daemon_was_down_is_metered_once_after_it_restarts(
    tmp_path: Path, unique: str
) -> None:
    """A container burns half a CPU for 45 s; the daemon is stopped for 15 s of it. Once the burn is over, the
    meter has what the container's cgroup counted, the down time's CPU included, nothing twice."""
    home = tmp_path / "home"
    daemon = start_daemon(home, local_node=True)
    platform = platform_id(daemon)
    burn = BURNER.model_copy(update={"command": [*BURN[:2], BURN[2].replace(f"timeout {BURN_SECONDS}", "timeout 45")]})
    try:
        with daemon.operator() as api:
            api.create_tenant(TenantCreate(name=unique, plan="medium"))
            api.deploy(unique, "burn", burn)
        [instance] = ready(daemon, unique, "burn", 1)
        wait_for(lambda: cpu(daemon, unique, "burn") or None, timeout=3 * INTERVAL, what="a first metered sample")

        daemon.process.send_signal(signal.SIGKILL)  # a crash: not even its last batch written
        daemon.process.wait(timeout=10)
        time.sleep(15)
        daemon = start_daemon(home, daemon.port, local_node=True, like=daemon)
        wait_for(lambda: "real" in errors_of(instance.container_id), timeout=90, what="the burn to end")
        time.sleep(INTERVAL + 2)  # a sample after the burn ended, and its flush
        truth = cgroup_cpu_seconds(instance.container_id)

        def whole() -> float | None:
            metered = cpu(daemon, unique, "burn")
            return metered if metered >= truth * 0.98 else None

        metered = wait_for(whole, timeout=2 * INTERVAL, what="the whole burn metered")
        print(f"\nmetered {metered:.3f} CPU-s; the container's cgroup counted {truth:.3f} s")
        assert metered == pytest.approx(truth, rel=0.02)  # the down time included, nothing twice
        line = usage(daemon, unique, "burn")
        assert line is not None and line.instance_hours * 3600 >= 45 * 0.9  # the gap's time too
    finally:
        daemon.stop()
        remove_everything_of(platform)
