"""The access log: one JSON line per request under $STRATA_HOME/logs/, rotated by size.

Lines are buffered in memory and written once a second, so the hot path never waits for a disk.
"""

import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.proxy import Exchange

MAX_BYTES = 64 * 1024 * 1024
KEEP_FILES = 5


class AccessLog:
    """One JSON line per request, buffered in memory and written once a second; rotated by size."""

    def __init__(
        self,
        path: "os.PathLike[str] | str",
        max_bytes: int = MAX_BYTES,
        keep: int = KEEP_FILES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.clock = clock
        self.lines: list[str] = []

    def write(self, exchange: "Exchange", peer: bytes, elapsed: float) -> None:
        route = exchange.route
        self.lines.append(
            json.dumps(
                {
                    "time": round(self.clock(), 3),
                    "id": exchange.request_id.decode("latin-1"),
                    "client": peer.decode(),
                    "host": exchange.host.decode("latin-1"),
                    "method": exchange.method.decode("latin-1"),
                    "target": exchange.target.decode("latin-1"),
                    "status": exchange.status,
                    "bytes": exchange.sent,
                    "ms": round(elapsed * 1000, 2),
                    "tenant": route.tenant if route else None,
                    "app": route.app if route else None,
                }
            )
        )

    def refusal(self, peer: bytes, status: int, sent: int) -> None:
        """What never became a request (bad syntax, a head too big or too slow): no route, no target."""
        line = {"time": round(self.clock(), 3), "id": None, "client": peer.decode(), "host": None, "method": None}
        line |= {"target": None, "status": status, "bytes": sent, "ms": None, "tenant": None, "app": None}
        self.lines.append(json.dumps(line))

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines

    def append(self, lines: list[str]) -> None:
        """Write `lines` to the file (in a worker thread), rotating it past its size. All or nothing: a write
        the disk refuses half-way (full) is cut back before the error is raised, so no line is ever torn."""
        if not lines:
            return
        data = memoryview(("\n".join(lines) + "\n").encode())
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            start = os.fstat(fd).st_size  # one writer (this gateway), so the end stays where it was
            try:
                while data:
                    data = data[os.write(fd, data) :]
            except OSError:
                os.ftruncate(fd, start)
                raise
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > self.max_bytes:
            for index in range(self.keep - 1, 0, -1):
                older = f"{self.path}.{index}"
                if os.path.exists(older):
                    os.replace(older, f"{self.path}.{index + 1}")
            os.replace(self.path, f"{self.path}.1")
