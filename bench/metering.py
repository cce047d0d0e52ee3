"""Metering: collecting 100 containers' CPU and memory counters from their cgroups, against `docker stats`.

    .venv/bin/python bench/metering.py [--containers 100] [--runs 7]

Starts `--containers` idle containers of strata/static (`sleep`, no network, labelled with this run's id), then,
`--runs` times each, alternately first: the platform's reader (`DockerRuntime.counters`: the cgroup files of all
of them, read in a worker thread; the engine is asked its cgroup layout once, before the runs) and two baselines
on the same containers: `docker stats --no-stream` of all of them (one CLI call), and the engine's stats API per
container, all at once (what the platform did before: `containers/<id>/stats?stream=false&one-shot=true`, one
sample without the engine's wait for a second). Medians and the ratio of each baseline to the reader (goal: the
reader ≤ 200 ms for 100). Every container it made is removed again, whatever happens (by its label); each step
has a timeout.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import aiodocker

from hosting.paas.docker_runtime import DockerRuntime

IMAGE = "strata/static"
DOCKER_URL = "unix:///var/run/docker.sock"
STEP_TIMEOUT_SECONDS = 120
GOAL_MS = 200


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=STEP_TIMEOUT_SECONDS
    ).stdout


def start(label: str, count: int) -> list[str]:
    command = ["run", "-d", "--label", label, "--network", "none", "--entrypoint", "/bin/sleep", IMAGE, "3600"]
    with ThreadPoolExecutor(8) as pool:
        return [out.strip() for out in pool.map(lambda _: docker(*command), range(count))]


async def reader(runtime: DockerRuntime, ids: list[str]) -> float:
    began = time.perf_counter()
    counters = await runtime.counters(ids)
    seconds = time.perf_counter() - began
    assert len(counters) == len(ids), f"read {len(counters)} of {len(ids)} containers' counters"
    return seconds


async def stats_api(engine: aiodocker.Docker, ids: list[str]) -> float:
    began = time.perf_counter()
    params = {"stream": "false", "one-shot": "true"}  # as the old path asked: no wait for a second sample
    await asyncio.gather(*(engine._query_json(f"containers/{i}/stats", params=params) for i in ids))
    return time.perf_counter() - began


def stats_cli(ids: list[str]) -> float:
    began = time.perf_counter()
    docker("stats", "--no-stream", "--format", "{{.ID}} {{.CPUPerc}} {{.MemUsage}}", *ids)
    return time.perf_counter() - began


async def measure(ids: list[str], runs: int) -> dict[str, list[float]]:
    runtime, engine = DockerRuntime("bench", DOCKER_URL), aiodocker.Docker(url=DOCKER_URL)
    times: dict[str, list[float]] = {"cgroups": [], "docker stats": [], "stats API": []}
    try:
        await runtime.counters(ids[:1])  # the engine's cgroup layout, asked once as the daemon does
        for run in range(runs):
            order = ["cgroups", "docker stats", "stats API"]
            for name in order[run % 3 :] + order[: run % 3]:
                if name == "cgroups":
                    times[name].append(await reader(runtime, ids))
                elif name == "docker stats":
                    times[name].append(await asyncio.to_thread(stats_cli, ids))
                else:
                    times[name].append(await stats_api(engine, ids))
    finally:
        await runtime.close()
        await engine.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    label = f"strata.bench-metering={os.getpid()}"
    try:
        print(f"starting {args.containers} containers of {IMAGE} ...", flush=True)
        ids = start(label, args.containers)
        times = asyncio.run(asyncio.wait_for(measure(ids, args.runs), STEP_TIMEOUT_SECONDS * args.runs))
    finally:
        left = docker("ps", "-aq", "--filter", f"label={label}").split()
        if left:
            docker("rm", "-f", *left)
    ours = statistics.median(times["cgroups"])
    print(f"{args.containers} containers, median of {args.runs} runs:")
    print(f"  cgroup reader      {ours * 1000:8.1f} ms (goal <= {GOAL_MS} ms)")
    for name in ("docker stats", "stats API"):
        theirs = statistics.median(times[name])
        print(f"  {name:<18} {theirs * 1000:8.1f} ms ({theirs / ours:.0f}x the reader's time)")


if __name__ == "__main__":
    main()
