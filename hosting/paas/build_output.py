"""A build's output: its log file and its client's stream, both bounded, so a build printing without end
(`RUN yes`) fills neither the daemon's memory nor its disk."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tenants.schemas import BuildRead

log = logging.getLogger(__name__)

MAX_LOG_BYTES = 16 * 1024**2  # a build's log file; past it the log says so and the build goes on
MAX_QUEUED_LINES = 10_000  # lines waiting for a slow client; more are dropped for it (the log keeps them)
LOG_TRUNCATED = f"... log truncated at {MAX_LOG_BYTES // 1024**2} MiB; the build goes on"

Event = str | BuildRead  # a line of the build's output, then the build as it ended


@dataclass
class BuildJob:
    """A build running in its own task; `events` streams it. Its context file is removed when it ends."""

    build_id: int
    task: "asyncio.Task[BuildRead]"
    queue: "asyncio.Queue[Event]" = field(repr=False)

    async def events(self) -> AsyncGenerator[Event, None]:
        """The build's output lines, then its `BuildRead`; it ends with the task too, should the task end
        without one. Leaving early (the client went away) cancels the build, which stops it on the engine and
        marks it failed."""
        getter: asyncio.Task[Event] | None = None
        try:
            while True:
                if self.queue.empty() and self.task.done():
                    return
                getter = asyncio.ensure_future(self.queue.get())
                await asyncio.wait({getter, self.task}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():  # the task ended: what it queued last is read next time round
                    getter.cancel()
                    continue
                item = getter.result()
                yield item
                if isinstance(item, BuildRead):
                    return
        finally:
            if getter is not None and not getter.done():
                getter.cancel()
            if not self.task.done():
                self.task.cancel()

    async def result(self) -> BuildRead:
        return await self.task


class BuildOutput:
    """Where a build's output goes, bounded: its log file, up to `MAX_LOG_BYTES` (then it says it is truncated;
    a write that fails, a full disk, ends the log but not the build), and its client's queue, up to
    `MAX_QUEUED_LINES` waiting (a client reading slower than the build prints misses lines, and is told how
    many once it catches up). The final `BuildRead` always goes in."""

    def __init__(self, path: Path, queue: "asyncio.Queue[Event]", whole_log: str) -> None:
        self.queue, self.path, self.whole_log = queue, path, whole_log
        self.dropped = 0
        self._written = 0
        self._truncated = False
        self._file: IO[str] | None = None
        try:
            self._file = path.open("w", encoding="utf-8", errors="replace", buffering=1)
        except OSError as exc:
            self._broken(exc)

    def line(self, line: str) -> None:
        self._write(line, ending=False)
        if self.queue.qsize() >= MAX_QUEUED_LINES:
            self.dropped += 1
            return
        self._tell_dropped()
        self.queue.put_nowait(line)

    def end(self, line: str, result: BuildRead) -> None:
        """The last line of the log (written past the cap: how the build ended), and the build to the client."""
        self._write(line, ending=True)
        self._tell_dropped()
        self.queue.put_nowait(result)

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _write(self, line: str, *, ending: bool) -> None:
        if self._file is None or (self._truncated and not ending):
            return
        data = line + "\n"
        size = len(data.encode(errors="replace"))
        try:
            if not ending and self._written + size > MAX_LOG_BYTES:
                self._truncated = True
                self._file.write(LOG_TRUNCATED + "\n")
                return
            self._file.write(data)
            self._written += size
        except OSError as exc:
            self._broken(exc)

    def _broken(self, exc: OSError) -> None:
        log.warning("the build log %s cannot be written (%s): the build goes on without it", self.path, exc)
        self.close()

    def _tell_dropped(self) -> None:
        if self.dropped:
            self.queue.put_nowait(
                f"... {self.dropped} lines dropped (the client reads too slowly); the whole log: {self.whole_log}"
            )
            self.dropped = 0
