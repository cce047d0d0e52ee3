"""Whether a Docker engine's containers of the platform changed since they were last listed: its events, followed.

Listing every engine every pass costs the daemon a request and its parse per engine (0.15 ms of CPU each here,
however few containers: 150 ms a pass at 1,000 engines) for answers that are mostly the same as the last. While
the engine's event stream, filtered to the platform's containers, is open and has said nothing, the last listing
still holds and is given again. Events are a hint, never the truth (the reconciler is level-triggered, as
Kubernetes' informers resync): a listing made while the stream was not open (not yet, or no longer: the engine
restarted, its SSH connection dropped) is not kept, and a kept one is listed again after `RELIST_SECONDS` whatever
the stream says, which bounds what an event missed could cost.

The engine answers the events request (its headers) before it subscribes the stream, so a change made in between
would go unsaid, and a listing begun after the answer but before the change kept for up to `RELIST_SECONDS`. The
stream is asked for the engine's past events too (`since` the epoch's first second: the engine keeps its last few
hundred in memory, and subscribes and replays under one lock), so such a change comes as a replayed event; so do
older ones, each costing only a listing more.
"""

import asyncio
import json
import logging
import time
from collections.abc import Callable

import aiodocker
import aiohttp

from hosting.paas.runtime import PLATFORM_LABEL, Container

log = logging.getLogger(__name__)

RELIST_SECONDS = 10.0  # a listing kept is made again at least this often, events or none
CONNECT_SECONDS = 30.0  # to open the stream; once open it stays so for as long as the engine keeps it
SINCE = "1"  # the past events asked for: all the engine keeps (0 would ask for none)


class ListingWatch:
    """The last listing of one engine's containers of one platform, kept while the engine's events say none of
    them changed. A caller `follow`s the engine each time it would list (the stream is opened once, and again
    after it ends), asks for what is `kept`, and when that is None lists: `listing` before, `keep` after. It says
    it `changed` a container itself once that is done: the engine's event of it may come after the next listing."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.clock = name, clock
        self.open = False  # the stream is open: listings made from now on may be kept
        self._task: asyncio.Task[None] | None = None
        self._generation = 0  # moves on at every event, and when the stream opens or ends
        self._kept: tuple[str, float, list[Container]] | None = None  # (platform, listed at, listing)

    def follow(self, docker: aiodocker.Docker, platform: str) -> None:
        """Open the engine's event stream of the platform's containers, unless it is open or being opened."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._follow(docker, platform), name=f"events of {self.name}")

    def kept(self, platform: str) -> list[Container] | None:
        """The last listing, if nothing happened since it began and it is younger than `RELIST_SECONDS`."""
        if self._kept is None:
            return None
        listed_for, listed_at, containers = self._kept
        return containers if listed_for == platform and self.clock() - listed_at < RELIST_SECONDS else None

    def listing(self) -> tuple[int, float] | None:
        """Mark a listing begun: a mark for `keep`, or None when the stream is not open (so nothing is kept)."""
        return (self._generation, self.clock()) if self.open else None

    def keep(self, mark: tuple[int, float] | None, platform: str, containers: list[Container]) -> None:
        """Keep a listing begun at `mark`, unless an event came (or the stream opened or ended) meanwhile."""
        if mark is not None and mark[0] == self._generation:
            self._kept = (platform, mark[1], containers)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _follow(self, docker: aiodocker.Docker, platform: str) -> None:
        filters = json.dumps({"type": ["container"], "label": [f"{PLATFORM_LABEL}={platform}"]})
        params = {"filters": filters, "since": SINCE}
        timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_SECONDS)
        try:
            async with docker._query("events", params=params, timeout=timeout) as response:
                self.changed()
                self.open = True
                async for _ in response.content.iter_any():  # whatever it says, something happened
                    self.changed()
        except (aiodocker.DockerError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.debug("the events of %s are not followed: %r", self.name, exc)
        finally:
            self.open = False
            self.changed()

    def changed(self) -> None:
        """Something happened (an event, the stream opened or ended, or the platform changed a container itself):
        the listing kept is not given again, nor one begun before now."""
        self._generation += 1
        self._kept = None
