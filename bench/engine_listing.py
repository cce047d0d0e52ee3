"""A Docker engine's containers as a reconcile pass asks for them: listed (a request, its answer parsed), the
baseline, and given again while the engine's events say nothing changed (`hosting/paas/engine_events.py`).

    PYTHONPATH=. .venv/bin/python bench/engine_listing.py [--containers 10] [--calls 1000]

On this host's engine (real Docker): `--containers` containers of a platform of the bench's own, made stopped from
strata/hello (built offline if the engine lacks it) and removed after. Each way is timed over `--calls` listings,
one after another as a pass's are: wall and CPU (this process's: the daemon's side; the engine's own work is not
in it) per listing, and what that makes for a pass over 1,000 engines. The fake engines of `bench/reconciler.py`
cost neither: what a real engine costs a pass is this.
"""

import argparse
import asyncio
import os
import secrets
import subprocess
import time
from collections.abc import Awaitable, Callable

from hosting.paas import images
from hosting.paas.docker_runtime import DockerRuntime
from hosting.paas.runtime import Container
from strata.config import DEFAULT_DOCKER_URL

DOCKER_URL = os.environ.get("DOCKER_HOST", DEFAULT_DOCKER_URL)
ENGINES = 1000  # a pass over this many engines, as bench/reconciler.py's
OPEN_SECONDS = 10.0  # for the engine's event stream to open


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=60).stdout


async def timed(name: str, calls: int, listing: Callable[[], Awaitable[list[Container]]], expected: int) -> None:
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        assert len(await listing()) == expected
    wall, cpu = (time.perf_counter() - started) / calls, (time.process_time() - cpu) / calls
    per_pass = f"{wall * ENGINES * 1e3:>9.1f} ms {cpu * ENGINES * 1e3:>9.1f} ms"
    print(f"{name:<22} {wall * 1e3:>7.3f} ms {cpu * 1e3:>7.3f} ms {per_pass}")


async def bench(args: argparse.Namespace) -> None:
    platform = f"bench{secrets.token_hex(4)}"
    runtime = DockerRuntime("local", DOCKER_URL)
    made: list[str] = []
    try:
        await images.bootstrap([runtime])
        for index in range(args.containers):
            labels = {"platform": platform, "tenant": "bench", "app": "web", "revision": "1", "instance": f"i{index}"}
            flags = [f"--label=strata.{key}={value}" for key, value in labels.items()]
            made.append((await asyncio.to_thread(docker, "create", *flags, "strata/hello")).strip())
        await runtime.list_containers(platform)  # every container inspected once, as after a pass
        deadline = time.monotonic() + OPEN_SECONDS
        while not runtime._watch.open:
            assert time.monotonic() < deadline, "the engine's event stream did not open"
            await runtime.containers(platform)
            await asyncio.sleep(0.05)
        print(f"{args.containers} containers on this host's engine, {args.calls} listings each way")
        print(f"{'listing':<22} {'wall':>10} {'cpu':>10} {'wall x1000':>12} {'cpu x1000':>12}")
        await timed("listed (baseline)", args.calls, lambda: runtime.list_containers(platform), args.containers)
        await timed("kept (events)", args.calls, lambda: runtime.containers(platform), args.containers)
    finally:
        if made:
            await asyncio.to_thread(docker, "rm", "-f", *made)
        await runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--containers", type=int, default=10)
    parser.add_argument("--calls", type=int, default=1000)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
