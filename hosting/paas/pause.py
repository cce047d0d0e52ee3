"""The pause between two passes of a level-triggered loop (the reconciler's, the VM nodes'): it ends when the
next pass is due, when one is asked for (`wake`), or when the loop is stopping. `Passes`: such a loop of `sync`s,
as the node sources (VM nodes, remote hosts, hypervisor hosts) run theirs."""

import asyncio
import logging

log = logging.getLogger(__name__)


async def pause(wake: asyncio.Event, stopping: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopping.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class Passes:
    """`sync` every `interval` seconds, and at once when `nudge`d (from any thread); a pass that fails is logged
    (as `what`'s) and the next one comes all the same."""

    what = "a pass"
    interval = 5.0

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def nudge(self) -> None:
        """Look again now; safe from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def sync(self) -> None:
        raise NotImplementedError

    async def passes(self, stopping: asyncio.Event) -> None:
        """Until `stopping`."""
        self._loop = asyncio.get_running_loop()
        while not stopping.is_set():
            self._wake.clear()
            try:
                await self.sync()
            except Exception:
                log.exception("%s failed; retrying", self.what)
            await pause(self._wake, stopping, self.interval)
