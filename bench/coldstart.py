"""Cold starts: the first request to a sleeping app, from paused and from stopped, on the host's engine; and
what a burst at one sleeping app costs another tenant's latency.

Each cycle waits until the app sleeps (its idle time 1 s; stopped 4 s later), then times one request through
the front door. The goals (issue 19): no failed first request; p95 <= 100 ms from paused and <= 1 s from
stopped; a burst of 500 requests at a sleeping app raises another tenant's p99 by <= 10%. VM nodes are not
measured here.

    .venv/bin/python bench/coldstart.py [--cycles 200]      (short: --cycles 10)
"""

import argparse
import multiprocessing
import statistics
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import strata_daemon

from tenants.client import StrataClient
from tenants.schemas import AppSpec, TenantCreate

POLL_SECONDS = 0.05
TIMEOUT_SECONDS = 60
BURST = 500
SETTLE_SECONDS = 0.5  # after the app is seen asleep: its first request meets a sleep that is over
PROBES = 400  # the other tenant's requests, alone and then under the burst


def wait_asleep(client: StrataClient, tenant: str, state: str) -> None:
    """Until the app's sleep is `state` (awake, paused, stopped) as the reconciler knows it now (an instance's
    row says so a pass later)."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while (sleep := client.app(tenant, "web").sleep) is None or sleep.state != state:
        if time.monotonic() > deadline:
            raise SystemExit(f"{tenant}/web did not become {state} within {TIMEOUT_SECONDS} s: {sleep}")
        time.sleep(POLL_SECONDS)


def first_request(gateway: str, host: str) -> tuple[float, str]:
    """How long the request took, and what came of it ("200", another status, or the error)."""
    started = time.monotonic()
    try:
        outcome = str(httpx.get(f"http://{gateway}/", headers={"Host": host}, timeout=30).status_code)
    except httpx.HTTPError as exc:
        outcome = type(exc).__name__
    return time.monotonic() - started, outcome


def p(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    return (
        statistics.quantiles(samples, n=100, method="inclusive")[round(q * 100) - 1] if len(samples) > 1 else samples[0]
    )


def probe_p99(gateway: str, host: str) -> float:
    samples = []
    with httpx.Client(timeout=30) as client:
        for _ in range(PROBES):
            started = time.monotonic()
            client.get(f"http://{gateway}/", headers={"Host": host}).raise_for_status()
            samples.append(time.monotonic() - started)
    return p(samples, 0.99)


def burst(gateway: str, host: str, results: "multiprocessing.Queue[Counter[str]]") -> None:
    """In a process of its own (the probe's latency must not be this process's GIL): BURST requests, 100 at a
    time, each on a connection of its own."""
    with ThreadPoolExecutor(100) as pool:
        results.put(Counter(pool.map(lambda _: first_request(gateway, host)[1], range(BURST))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    args = parser.parse_args()
    gateway = f"127.0.0.1:{strata_daemon.free_port()}"
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.parent.mkdir(exist_ok=True)
        daemon = strata_daemon.start(
            home, "--gateway", gateway, "--gateway-admin", f"127.0.0.1:{strata_daemon.free_port()}", "--https", "none",
            "--ssh", "none",
        )  # fmt: skip
        platform = ""
        try:
            token = (home / "operator.token").read_text().strip()
            platform = (home / "platform-id").read_text().strip()
            with StrataClient(socket=home / "api.sock", token=token) as client:
                client.bootstrap_images()
                spec = AppSpec(image="strata/hello", health_path="/healthz", memory_mib=64, idle_stop_seconds=1)
                for tenant, idle in (("sleepy", 1), ("busy", 0)):
                    client.create_tenant(TenantCreate(name=tenant, plan="medium"))
                    client.deploy(tenant, "web", spec.model_copy(update={"idle_stop_seconds": idle}))
                deadline = time.monotonic() + TIMEOUT_SECONDS
                while first_request(gateway, "web.busy.localhost")[1] != "200" and time.monotonic() < deadline:
                    time.sleep(POLL_SECONDS)  # until the front door routes it
                awake = [first_request(gateway, "web.busy.localhost")[0] for _ in range(args.cycles)]
                print(f"baseline, an awake app: {len(awake)} requests (a connection each), p50 "
                      f"{p(awake, 0.5) * 1000:6.1f} ms, p95 {p(awake, 0.95) * 1000:6.1f} ms")  # fmt: skip
                results: dict[str, list[float]] = {"paused": [], "stopped": []}
                woken: dict[str, list[float]] = {"paused": [], "stopped": []}  # the platform's own measure
                outcomes: Counter[str] = Counter()
                for state in ("paused", "stopped"):
                    for _ in range(args.cycles):
                        wait_asleep(client, "sleepy", state)
                        time.sleep(SETTLE_SECONDS)
                        wakeups = client.app("sleepy", "web").sleep.wakeups  # type: ignore[union-attr]
                        seconds, outcome = first_request(gateway, "web.sleepy.localhost")
                        results[state].append(seconds)
                        outcomes[outcome] += 1
                        sleep = client.app("sleepy", "web").sleep
                        if sleep is not None and sleep.last_wake_ms is not None and sleep.wakeups > wakeups:
                            woken[state].append(sleep.last_wake_ms / 1000)
                        if outcome != "200":
                            print(f"  cycle from {state}: {outcome} after {seconds * 1000:.0f} ms")
                    samples, wakes = results[state], woken[state]
                    print(f"from {state:>7}: {len(samples)} first requests, p50 {p(samples, 0.5) * 1000:6.1f} ms, "
                          f"p95 {p(samples, 0.95) * 1000:6.1f} ms, max {max(samples) * 1000:6.1f} ms; the wake-up "
                          f"alone p50 {p(wakes, 0.5) * 1000:6.1f} ms, p95 {p(wakes, 0.95) * 1000:6.1f} ms")  # fmt: skip
                print(f"first requests: {dict(outcomes)} (failed: {sum(outcomes.values()) - outcomes['200']})")
                alone = probe_p99(gateway, "web.busy.localhost")
                for state in ("stopped", "awake"):  # the same burst at an awake app: what the burst costs anyway
                    wait_asleep(client, "sleepy", state)
                    answers: multiprocessing.Queue[Counter[str]] = multiprocessing.Queue()
                    bursting = multiprocessing.Process(target=burst, args=(gateway, "web.sleepy.localhost", answers))
                    bursting.start()
                    loaded = probe_p99(gateway, "web.busy.localhost")
                    print(f"burst of {BURST} at the {state} app: {dict(answers.get(timeout=TIMEOUT_SECONDS))}; other "
                          f"tenant's p99 alone {alone * 1000:.1f} ms, during it {loaded * 1000:.1f} ms "
                          f"({loaded / alone:.2f}x)")  # fmt: skip
                    bursting.join()
        finally:
            strata_daemon.stop(daemon, platform)


if __name__ == "__main__":
    main()
