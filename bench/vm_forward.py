"""Reaching a container on a VM node from 127.0.0.1: QEMU's user-network forward (`hostfwd_add` over QMP, what
the platform uses) against an SSH tunnel (asyncssh's local port forward, in this process), on the same
container in one run; the same image on the host's own engine is the baseline.

    .venv/bin/python bench/vm_forward.py [--seconds 5]

Needs a Docker engine and the node image (`strata images node-build`; STRATA_IMAGES_DIR or
/var/tmp/strata-test-images). Runs one VM in a temporary directory and destroys it, and removes the baseline
container. wrk: 1 thread, 16 connections, strata/static's index page (busybox httpd).
"""

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import httpx
from wrk_report import parse

from hosting.iaas import detect_accel
from hosting.iaas.flavors import flavor
from hosting.iaas.guest_image import find_node_image
from hosting.iaas.guest_ssh import client_key
from hosting.iaas.net import GUEST_ADDRESS
from hosting.iaas.provision import Provisioner
from hosting.iaas.qemu import QemuDriver
from hosting.paas import images
from hosting.paas.docker_runtime import DockerRuntime
from hosting.paas.vm_nodes import engine_ready
from strata.config import Settings

IMAGES = Path(os.environ.get("STRATA_IMAGES_DIR") or "/var/tmp/strata-test-images")
IMAGE = "strata/static:latest"
PORT = 8080


async def wrk(port: int, seconds: int) -> tuple[float, float, float]:
    """req/s, p50 ms, p99 ms."""
    process = await asyncio.create_subprocess_exec(
        "wrk", "-t1", "-c16", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    report = parse((await process.communicate())[0].decode())
    if report.failed:
        raise SystemExit(f"wrk saw errors: {report.failures}")
    return report.rate, report.p50_ms, report.p99_ms


async def first_answer(port: int) -> float:
    """Seconds until http://127.0.0.1:PORT/ answers 200."""
    started = time.monotonic()
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(f"http://127.0.0.1:{port}/", timeout=2)).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                await asyncio.sleep(0.02)


async def main(seconds: int) -> None:
    image = find_node_image(IMAGES)
    if image is None:
        raise SystemExit(f"no node image in {IMAGES}: build it with `strata images node-build`")
    local = DockerRuntime("local", Settings.from_env().docker_url)
    await images.bootstrap([local])
    results: dict[str, tuple[float, float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="strata-fwd-bench-") as scratch:
        home = Path(scratch)
        accel = detect_accel()
        driver, templates = QemuDriver(home / "vms", accel), QemuDriver(home / "templates", accel)
        provisioner = Provisioner(
            driver, templates, image.guest, client_key(home / "key"), engine_ready, home / "snapshots"
        )
        baseline = None
        try:
            await provisioner.create("fwd", flavor("small"))
            connection = (await provisioner.boot("fwd")).connection
            listener = await connection.forward_local_path(str(home / "docker.sock"), "/var/run/docker.sock")
            guest = DockerRuntime("fwd", f"unix://{home / 'docker.sock'}")
            await images.ship(IMAGE, local, guest)
            await guest.close()
            run = f"docker run -d -p {GUEST_ADDRESS}:{PORT}:{PORT} {IMAGE}"
            await connection.run(run, check=True)

            started = time.monotonic()
            port = await driver.forward("fwd", PORT)
            results["QEMU hostfwd"] = (time.monotonic() - started + await first_answer(port), *await wrk(port, seconds))

            started = time.monotonic()
            tunnel = await connection.forward_local_port("127.0.0.1", 0, GUEST_ADDRESS, PORT)
            port = tunnel.get_port()
            results["SSH tunnel"] = (time.monotonic() - started + await first_answer(port), *await wrk(port, seconds))
            tunnel.close()
            listener.close()
            connection.close()

            baseline = (await local.docker.containers.run({"Image": IMAGE, **_published()})).id
            port = int(
                (await local.docker.containers.container(baseline).show())["NetworkSettings"]["Ports"][f"{PORT}/tcp"][
                    0
                ]["HostPort"]
            )
            results["host engine"] = (await first_answer(port), *await wrk(port, seconds))
        finally:
            if baseline:
                await local.docker.containers.container(baseline).delete(force=True)
            await local.close()
            for drv in (driver, templates):
                for name in drv.names():
                    await drv.destroy(name)
    print(f"accel: {accel}; wrk -t1 -c16 -d{seconds}s on {IMAGE}'s index page\n")
    print(f"{'path':<14} {'first answer':>13} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for label, (ready, rate, p50, p99) in results.items():
        print(f"{label:<14} {ready:>12.2f}s {rate:>9.0f} {p50:>8.2f} {p99:>8.2f}")
    print(f"\nhostfwd / SSH tunnel: {results['QEMU hostfwd'][1] / results['SSH tunnel'][1]:.2f}x the req/s")


def _published() -> dict:
    return {"HostConfig": {"PortBindings": {f"{PORT}/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    asyncio.run(main(parser.parse_args().seconds))
