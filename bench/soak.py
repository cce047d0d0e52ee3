"""Soak: many keep-alive connections through the gateway across apps of several tenants, while the apps are
scaled and redeployed (rolling). Every request must succeed, and the daemon (the gateway runs in it) must stay
within a memory bound.

    .venv/bin/python bench/soak.py [--seconds 60] [--connections 1000] [--apps 20] [--tenants 5]

Load: one wrk per app (keep-alive, `--timeout 10s`), the connections shared among them, on strata/static
(busybox httpd) with 2 replicas per app. Churn meanwhile: every few seconds one app is scaled to 3 and back,
or redeployed with a new revision. Prints requests, failures (non-2xx, socket errors), p50/p99 and the
daemon's peak RSS; exits 1 if a request failed or the peak passed `--max-rss-mib`. Needs a Docker engine.
A short run (10 s, 100 connections, 4 apps) is part of `make test` (tests/faults/test_soak.py). Every process
and container it starts it removes again; traffic stays on 127.0.0.1.
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import strata_daemon
from wrk_report import FAILURE_KINDS, parse

from tenants.client import StrataClient
from tenants.schemas import AppSpec, TenantCreate

SPEC = AppSpec(image="strata/static", replicas=2, cpu_millicores=100, memory_mib=32)
CHURN_EVERY_SECONDS = 3.0


def wait_ready(client: StrataClient, gateway: int, apps: list[tuple[str, str]], replicas: int) -> None:
    """Each app has `replicas` ready instances and the front door routes to it (HAProxy takes a reload, a
    fraction of a second, to serve a new app)."""
    deadline = time.monotonic() + 120
    for tenant, app in apps:
        while sum(i.state == "ready" for i in client.instances(tenant, app)) < replicas or not _routed(
            gateway, tenant, app
        ):
            if time.monotonic() > deadline:
                raise SystemExit(f"{tenant}/{app} did not get {replicas} ready instances")
            time.sleep(0.1)


def _routed(gateway: int, tenant: str, app: str) -> bool:
    answer = httpx.get(f"http://127.0.0.1:{gateway}/", headers={"Host": f"{app}.{tenant}.localhost"})
    return answer.status_code == 200


def wrk(gateway: int, tenant: str, app: str, connections: int, seconds: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency",
         "-H", f"Host: {app}.{tenant}.localhost", f"http://127.0.0.1:{gateway}/"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def churn(client: StrataClient, apps: list[tuple[str, str]], stop: threading.Event, done: list[str]) -> None:
    """Scale one app up and back, or roll a new revision of it, every few seconds, round robin."""
    step = 0
    while not stop.wait(CHURN_EVERY_SECONDS):
        tenant, app = apps[step % len(apps)]
        if step % 2:
            client.deploy(tenant, app, SPEC.model_copy(update={"env": {"REVISION": str(step)}}))
            done.append(f"redeploy {tenant}/{app}")
        else:
            client.scale(tenant, app, 3)
            stop.wait(CHURN_EVERY_SECONDS / 2)
            client.scale(tenant, app, 2)
            done.append(f"scale {tenant}/{app} 2→3→2")
        step += 1


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--tenants", type=int, default=5)
    parser.add_argument("--max-rss-mib", type=float, default=512)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="strata-soak-") as scratch:
        home, gateway = Path(scratch) / "home", strata_daemon.free_port()
        admin = f"127.0.0.1:{strata_daemon.free_port()}"
        daemon = strata_daemon.start(
            home,
            "--local-node",
            "--gateway",
            f"127.0.0.1:{gateway}",
            "--gateway-admin",
            admin,
            "--ssh",
            "none",
            "--https",
            "none",
        )
        platform = ""
        try:
            platform = (home / "platform-id").read_text().strip()
            token = (home / "operator.token").read_text().strip()
            with StrataClient(socket=home / "api.sock", token=token, timeout=60) as client:
                client.bootstrap_images()
                tenants = [f"soak{t}" for t in range(args.tenants)]
                for tenant in tenants:
                    client.create_tenant(TenantCreate(name=tenant, plan="large"))
                apps = [(tenants[a % len(tenants)], f"app{a}") for a in range(args.apps)]
                for tenant, app in apps:
                    client.deploy(tenant, app, SPEC)
                wait_ready(client, gateway, apps, 2)

                per_app = max(1, args.connections // len(apps))
                loads = [wrk(gateway, tenant, app, per_app, args.seconds) for tenant, app in apps]
                stop, done = threading.Event(), list[str]()
                churner = threading.Thread(target=churn, args=(client, apps, stop, done))
                churner.start()
                results = [parse(load.communicate()[0]) for load in loads]
                stop.set()
                churner.join()
            peak = peak_rss_mib(daemon.pid)
        finally:
            strata_daemon.stop(daemon, platform)

    requests = sum(r.requests for r in results)
    failures = {kind: sum(r.failures[kind] for r in results) for kind in FAILURE_KINDS}
    failed = sum(failures.values())
    print(f"{per_app * len(apps)} connections over {len(apps)} apps of {args.tenants} tenants, {args.seconds} s")
    print(f"churn: {len(done)} changes ({', '.join(done[:4])}{' ...' if len(done) > 4 else ''})")
    kinds = ", ".join(f"{kind} {count}" for kind, count in failures.items() if count)
    print(f"requests {requests} ({requests / args.seconds:.0f}/s), failed {failed}" + (f" ({kinds})" if kinds else ""))
    print(f"p50 {statistics.median(r.p50_ms for r in results):.1f} ms (median of apps), "
          f"p99 {max(r.p99_ms for r in results):.1f} ms (worst app)")  # fmt: skip
    print(f"daemon peak RSS {peak:.0f} MiB (bound {args.max_rss_mib:.0f} MiB)")
    return 0 if failed == 0 and peak <= args.max_rss_mib and done else 1


if __name__ == "__main__":
    sys.exit(main())
