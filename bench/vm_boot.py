"""Node start time: a cold boot against a restore from the flavor's template snapshot, to SSH-ready (a login
as the VM itself, its own host key checked) and to Docker-ready (`docker info` answers in the guest).

    .venv/bin/python bench/vm_boot.py [--runs 3] [--flavor small]

Needs the node image (`strata images node-build`; found in STRATA_IMAGES_DIR or /var/tmp/strata-test-images).
Everything runs in a temporary directory; every VM it starts it destroys. The template (one cold boot and a
snapshot) is made once before the restores and reported apart: it is paid once per flavor and image.
"""

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from hosting.iaas import detect_accel
from hosting.iaas.flavors import flavor
from hosting.iaas.guest_image import find_node_image
from hosting.iaas.guest_ssh import client_key
from hosting.iaas.provision import Booted, Provisioner
from hosting.iaas.qemu import QemuDriver
from hosting.paas.vm_nodes import engine_ready

IMAGES = Path(os.environ.get("STRATA_IMAGES_DIR") or "/var/tmp/strata-test-images")


async def boot_one(provisioner: Provisioner, name: str, restore: bool) -> Booted:
    await provisioner.create(name, flavor(ARGS.flavor), restore=restore)
    try:
        booted = await provisioner.boot(name)
        booted.connection.close()
        return booted
    finally:
        await provisioner.driver.destroy(name)


async def main() -> None:
    image = find_node_image(IMAGES)
    if image is None:
        raise SystemExit(f"no node image in {IMAGES}: build it with `strata images node-build`")
    accel = detect_accel()
    with tempfile.TemporaryDirectory(prefix="strata-vm-bench-") as scratch:
        home = Path(scratch)
        templates = QemuDriver(home / "templates", accel)
        provisioner = Provisioner(
            QemuDriver(home / "vms", accel),
            templates,
            image.guest,
            client_key(home / "key"),
            engine_ready,
            home / "snapshots",
        )
        try:
            started = time.monotonic()
            await provisioner.template(flavor(ARGS.flavor))
            template_seconds = time.monotonic() - started
            cold = [await boot_one(provisioner, f"cold-{i}", restore=False) for i in range(ARGS.runs)]
            restored = [await boot_one(provisioner, f"clone-{i}", restore=True) for i in range(ARGS.runs)]
        finally:
            for name in templates.names():
                await templates.destroy(name)
    print(f"accel: {accel}; flavor {ARGS.flavor}; medians of {ARGS.runs}")
    print(f"template (cold boot + snapshot, once per flavor and image): {template_seconds:.1f} s\n")
    print(f"{'start':<10} {'SSH-ready':>10} {'Docker-ready':>13}")
    for label, runs in (("cold boot", cold), ("restore", restored)):
        ssh = statistics.median(b.ssh_seconds for b in runs)
        docker = statistics.median(b.ready_seconds for b in runs)
        print(f"{label:<10} {ssh:>9.2f}s {docker:>12.2f}s")
    speedup = statistics.median(b.ready_seconds for b in cold) / statistics.median(b.ready_seconds for b in restored)
    print(f"\nrestore is {speedup:.1f}x faster to Docker-ready (goal: a node ready in <= 5 s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--flavor", default="small")
    ARGS = parser.parse_args()
    asyncio.run(main())
