"""Logs of several instances as one stream, each line prefixed by its instance."""

import asyncio
from collections.abc import AsyncIterator, Sequence

from hosting.paas.runtime import EngineError, NodeRuntime

QUEUE_LINES = 1_000  # bounded: a slow reader slows the engines' streams instead of filling memory
LINE_CHARS = 200  # of a line in `last_lines`


async def last_lines(runtime: NodeRuntime, container_id: str, count: int) -> list[str]:
    """The last `count` lines a container printed that are not blank, each cut to LINE_CHARS."""
    lines: list[str] = []
    async for line in runtime.logs(container_id, follow=False, since=None):
        if line.strip():
            lines = [*lines[1 - count :], line.strip()[:LINE_CHARS]]
    return lines


async def merged_logs(
    sources: list[tuple[str, NodeRuntime, str]],
    *,
    follow: bool,
    since: int | None,
    unreached: Sequence[tuple[str, EngineError]] = (),
) -> AsyncIterator[str]:
    """Yield `[instance] line` from every (instance, runtime, container id) as lines arrive; first a line for each
    (instance, why) of `unreached` (its engine is not reached), so that none is left out without a word."""
    queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_LINES)
    for instance, exc in unreached:
        yield _unavailable(instance, exc)

    async def pump(instance: str, runtime: NodeRuntime, container_id: str) -> None:
        try:
            async for line in runtime.logs(container_id, follow=follow, since=since):
                await queue.put(f"[{instance}] {line.rstrip()}\n")
        except EngineError as exc:
            await queue.put(_unavailable(instance, exc))
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(*source)) for source in sources]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()


def _unavailable(instance: str, exc: EngineError) -> str:
    return f"[{instance}] (logs unavailable: {exc})\n"
