"""Scheduler throughput: placements per second of 10,000 instances onto 1,000 nodes, spread and binpack.

    .venv/bin/python bench/scheduler.py [--nodes 1000] [--instances 10000] [--runs 5] [--seed 1]

The cluster is synthetic and the same for a given seed: mixed node sizes, some of them already partly
used, some not ready or draining, a few tenants with dedicated VMs, and apps of 1 to 50 replicas placed
app after app as a reconcile pass does. A run times what a pass pays: building the `Scheduler` from the
node views, then placing every instance. There is no baseline to run beside it; the figure is printed
as a ratio to the goal, with how many placements found no node and how many nodes the pass left at least
90% full (the strategies' difference: binpack fills nodes, spread evens them out).
"""

import argparse
import random
import statistics
import time

from hosting.paas.scheduler import NodeView, NoFit, Request, Scheduler, Strategy

GOAL_PLACEMENTS_PER_SECOND = 10_000
NODE_SIZES = [(2000, 4096), (4000, 8192), (8000, 16384), (16000, 32768)]  # (millicores, MiB)
NODE_SIZE_WEIGHTS = [3, 4, 2, 1]
NOT_READY_SHARE = 0.05
DRAINING_SHARE = 0.02
DEDICATED_TENANTS = 5
VMS_PER_DEDICATED_TENANT = 10
TENANTS = 100
REPLICAS = [1, 2, 3, 5, 10, 20, 50]
INSTANCE_SIZES = [(100, 128), (250, 256), (500, 512), (1000, 1024)]  # (millicores, MiB)
INSTANCE_SIZE_WEIGHTS = [3, 4, 2, 1]
FULL_SHARE = 0.9  # a node with this share of its memory claimed counts as full


def cluster(count: int, rng: random.Random) -> list[NodeView]:
    """Nodes of mixed sizes, up to a quarter used already; the first ones are the dedicated tenants' VMs."""
    dedicated = [f"t{t}" for t in range(DEDICATED_TENANTS) for _ in range(VMS_PER_DEDICATED_TENANT)]
    nodes = []
    for index in range(count):
        cpu, memory = rng.choices(NODE_SIZES, NODE_SIZE_WEIGHTS)[0]
        used = rng.uniform(0, 0.25)
        draw = rng.random()
        nodes.append(
            NodeView(
                name=f"node-{index}",
                ready=draw >= NOT_READY_SHARE,
                cpu_millicores=cpu,
                memory_mib=memory,
                allocated_cpu_millicores=int(cpu * used),
                allocated_memory_mib=int(memory * used),
                tenant=dedicated[index] if index < len(dedicated) else None,
                draining=NOT_READY_SHARE <= draw < NOT_READY_SHARE + DRAINING_SHARE,
            )
        )
    return nodes


def requests(count: int, rng: random.Random) -> list[Request]:
    """`count` instances of apps of random tenants, sizes and replica counts, each app's replicas together."""
    wanted: list[Request] = []
    while len(wanted) < count:
        tenant = rng.randrange(TENANTS)
        cpu, memory = rng.choices(INSTANCE_SIZES, INSTANCE_SIZE_WEIGHTS)[0]
        replicas = min(rng.choice(REPLICAS), count - len(wanted))
        request = Request(f"t{tenant}", f"app-{len(wanted)}", tenant < DEDICATED_TENANTS, cpu, memory)
        wanted += [request] * replicas
    return wanted


def run(nodes: list[NodeView], wanted: list[Request], strategy: Strategy) -> tuple[float, Scheduler, int]:
    """Seconds for one pass's placements, the scheduler as they left it, and how many found no node."""
    started = time.perf_counter()
    scheduler = Scheduler(nodes, strategy)
    unfit = sum(isinstance(scheduler.place(request), NoFit) for request in wanted)
    return time.perf_counter() - started, scheduler, unfit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    nodes, wanted = cluster(args.nodes, rng), requests(args.instances, rng)
    print(f"{args.instances} instances onto {args.nodes} nodes, median of {args.runs} runs")
    print(f"{'strategy':>8} {'placements/s':>13} {'x goal':>7} {'no node':>8} {'nodes full':>11}")
    for strategy in Strategy:
        results = [run(nodes, wanted, strategy) for _ in range(args.runs)]
        seconds = statistics.median(result[0] for result in results)
        _, scheduler, unfit = results[0]
        full = sum(1 for node in scheduler.nodes.values() if node.allocated_memory_mib >= FULL_SHARE * node.memory_mib)
        rate = len(wanted) / seconds
        print(f"{strategy:>8} {rate:>13,.0f} {rate / GOAL_PLACEMENTS_PER_SECOND:>6.1f}x {unfit:>8} {full:>11}")


if __name__ == "__main__":
    main()
