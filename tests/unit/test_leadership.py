"""Leadership's notifications on PostgreSQL: a daemon's change wakes the others, never the daemon that sent it (a
leader's notice after each pass that wrote rows would otherwise bring it a pass more each time)."""

import asyncio

from strata.leadership import Leadership
from tenants import db
from tests.conftest import MIGRATED
from tests.postgres import Postgres


def test_a_daemon_hears_the_others_changes_and_not_its_own(postgres: Postgres) -> None:
    heard = {"a": 0, "b": 0}

    def hearing(name: str) -> Leadership:
        return Leadership(engine, name, lambda: heard.__setitem__(name, heard[name] + 1))

    async def until_heard(sender: Leadership, hearer: str) -> None:
        """Announce until `hearer` heard it (a standby listens between its tries for the lock)."""
        async with asyncio.timeout(10):
            while not heard[hearer]:
                sender.announce()
                await asyncio.sleep(0.3)

    async def scenario() -> None:
        a, b = hearing("a"), hearing("b")
        stopping, released = asyncio.Event(), asyncio.Event()
        running = [asyncio.create_task(daemon.run(stopping, released)) for daemon in (a, b)]
        async with asyncio.timeout(10):
            while not (a.leading.is_set() or b.leading.is_set()):
                await asyncio.sleep(0.05)
        await until_heard(a, "b")
        await asyncio.sleep(1)  # anything still on its way
        assert heard["a"] == 0  # a's own, each one of them
        heard_by_b = heard["b"]
        await until_heard(b, "a")
        await asyncio.sleep(1)
        assert heard["b"] == heard_by_b
        stopping.set()
        released.set()
        await asyncio.gather(*running)

    with postgres.database(template=MIGRATED) as url:
        engine = db.open_engine(url)
        try:
            asyncio.run(scenario())
        finally:
            engine.dispose()
