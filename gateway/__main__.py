"""Run a gateway process: alone with fixed routes (benchmarks, trying it), or as a worker of the daemon.

    python -m gateway --listen 127.0.0.1:8080 --route acme/web=127.0.0.1:9001[,127.0.0.1:9002] [--workers 2]
    python -m gateway --listen 127.0.0.1:8080 --reuse-port --feed $STRATA_HOME/gateway.sock   (what `strata up
    --gateway-workers N` starts N-1 times)

With `--workers N`, N processes share the port (SO_REUSEPORT), each with the same routes.
"""

import argparse
import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import uvloop

from gateway import Gateway, RouteSpec, serve_admin
from gateway.feed import follow

UNLIMITED = 1_000_000_000


def parse_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)


def parse_route(value: str) -> RouteSpec:
    """TENANT/APP=HOST:PORT[,HOST:PORT...]: no rate limit, no body limit."""
    name, _, endpoints = value.partition("=")
    tenant, _, app = name.partition("/")
    return RouteSpec(tenant, app, (), tuple(endpoints.split(",")), UNLIMITED, UNLIMITED, UNLIMITED)


async def serve(args: argparse.Namespace) -> None:
    gateway = Gateway(args.domain)
    gateway.apply(parse_route(route) for route in args.route)
    await gateway.listen(*parse_address(args.listen), reuse_port=args.reuse_port)
    admin = await serve_admin(gateway, *parse_address(args.admin)) if args.admin else None
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
    if args.feed:  # a worker of the daemon: routes come from it, and it ends with it
        feed = asyncio.create_task(follow(Path(args.feed), gateway))
        await asyncio.wait([feed, asyncio.create_task(stopping.wait())], return_when=asyncio.FIRST_COMPLETED)
    else:
        await stopping.wait()
    await gateway.close()
    if admin is not None:
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument("--domain", default="localhost")
    parser.add_argument("--route", action="append", default=[], metavar="TENANT/APP=HOST:PORT[,...]")
    parser.add_argument("--admin", metavar="HOST:PORT", help="serve GET /metrics here")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--reuse-port", action="store_true", help="share the port with other processes")
    parser.add_argument("--feed", metavar="SOCKET", help="take routes from the daemon's route feed")
    args = parser.parse_args()
    if args.workers == 1:
        uvloop.run(serve(args))
        return
    # N processes on one port: each a copy of this command with one worker.
    child = [sys.executable, "-m", "gateway", "--listen", args.listen, "--domain", args.domain, "--reuse-port"]
    child += [part for route in args.route for part in ("--route", route)]
    workers = [subprocess.Popen(child) for _ in range(args.workers)]

    def stop(signum: int, _frame: object) -> None:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        worker.wait()


if __name__ == "__main__":
    main()
