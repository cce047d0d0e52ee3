"""Extra gateway processes for `strata up --gateway-workers N`: N-1 of them share the daemon gateway's port
(SO_REUSEPORT), take its routes from the route feed, and are restarted if they die."""

import asyncio
import logging
import signal
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 10.0


class GatewayWorkers:
    def __init__(self, count: int, listen: tuple[str, int], domain: str, feed: Path, log_file: Path) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "gateway",
            "--listen",
            f"{listen[0]}:{listen[1]}",
            "--domain",
            domain,
            "--reuse-port",
            "--feed",
            str(feed),
        ]
        self.count = count
        self.log_file = log_file
        self.processes: list[subprocess.Popen[bytes]] = []

    async def run(self, stopping: asyncio.Event) -> None:
        """Keep `count` workers running until `stopping`, then stop each (by its PID) and wait for it."""
        self.processes = [self._start() for _ in range(self.count)]
        try:
            while not stopping.is_set():
                await asyncio.wait([asyncio.ensure_future(stopping.wait())], timeout=CHECK_SECONDS)
                for index, process in enumerate(self.processes):
                    if process.poll() is not None and not stopping.is_set():
                        log.warning("gateway worker %d exited with %s; restarting it", process.pid, process.returncode)
                        self.processes[index] = self._start()
        finally:
            for process in self.processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in self.processes:
                try:
                    await asyncio.to_thread(process.wait, STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()

    def _start(self) -> subprocess.Popen[bytes]:
        with self.log_file.open("ab") as output:
            return subprocess.Popen(self.argv, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
