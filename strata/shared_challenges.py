"""ACME's HTTP-01 challenges answered at every daemon's front door, whichever daemon ordered the certificate.

Each daemon orders certificates for the names its front door serves, and the CA validates a challenge at whatever
host the name points to: with DNS pointing at every host, another daemon's door. So a daemon's board (what its
ACME orders publish their challenges on) puts each one on its own door and in the database, and every daemon puts
the others' on its door too, read every `SYNC_SECONDS`. A publish returns once the others have had the time to
read it, before the CA is told to validate.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import Engine

from hosting.paas.pause import pause
from tenants import challenges, db

log = logging.getLogger(__name__)

SYNC_SECONDS = 0.25
SPREAD_SECONDS = 3 * SYNC_SECONDS  # a publish waits this long: every other door has read it by then


class Board(Protocol):
    """A front door's challenge map (`gateway.frontdoor.FrontDoor`)."""

    async def publish(self, token: str, key_authorization: str) -> None: ...

    async def withdraw(self, token: str) -> None: ...


class SharedChallenges:
    """The board of this daemon's ACME orders (`publish`, `withdraw`), and `run`: the others' put on `door`."""

    def __init__(self, engine: Engine, name: str, door: Board) -> None:
        self.engine, self.name, self.door = engine, name, door
        self._theirs: dict[str, str] = {}  # the other daemons' challenges on this door

    async def publish(self, token: str, key_authorization: str) -> None:
        await self.door.publish(token, key_authorization)
        await asyncio.to_thread(self._write, challenges.put, self.name, token, key_authorization)
        await asyncio.sleep(SPREAD_SECONDS)

    async def withdraw(self, token: str) -> None:
        await self.door.withdraw(token)
        try:
            await asyncio.to_thread(self._write, challenges.drop, token)
        except Exception as exc:  # a stale token is harmless; this daemon's next start removes it
            log.warning("ACME challenge not removed from the database: %s", exc)

    async def run(self, stopping: asyncio.Event) -> None:
        """Until `stopping`: this daemon's leftovers removed, then the others' challenges kept on its door."""
        left = True  # this daemon's leftovers (a crash mid-order) are still to be removed
        while not stopping.is_set():
            try:
                if left:
                    await asyncio.to_thread(self._write, challenges.drop_all_of, self.name)
                    left = False
                await self._sync()
            except Exception as exc:  # the database is out of reach a moment: as they were
                log.warning("other daemons' ACME challenges not read: %s", exc)
            await pause(asyncio.Event(), stopping, SYNC_SECONDS)

    async def _sync(self) -> None:
        theirs = await asyncio.to_thread(self._read)
        for token in self._theirs.keys() - theirs.keys():
            await self.door.withdraw(token)
        for token, key_authorization in theirs.items():
            if self._theirs.get(token) != key_authorization:
                await self.door.publish(token, key_authorization)
        self._theirs = theirs

    def _read(self) -> dict[str, str]:
        with db.session(self.engine) as session:
            return challenges.of_others(session, self.name)

    def _write(self, write: Callable[..., None], *args: str) -> None:
        with db.session(self.engine) as session:
            write(session, *args)
