"""Leadership's notifications on PostgreSQL: a daemon's change wakes the others, never the daemon that sent it (a
leader's notice after each pass that wrote rows would otherwise bring it a pass more each time). A daemon's name is
held by one daemon at a time, and free again the moment its session ends."""

import asyncio
import os
import signal
import subprocess
import sys

import pytest
from sqlalchemy import Engine

from strata.leadership import Leadership, NameTaken, claimed
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


def test_a_name_is_held_by_one_daemon_at_a_time_and_freed_when_it_dies(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        with claimed(engine, "a"), claimed(engine, "a"):
            return  # one daemon per SQLite database: its home's lock keeps the second out, not its name
    with claimed(engine, "a"), claimed(engine, "b"):
        with pytest.raises(NameTaken), claimed(engine, "a"):
            pass
    with claimed(engine, "a"):  # given back at the block's end
        pass

    # a daemon killed holding its name: the server frees it with its session, at once
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, engine.url.render_as_string(hide_password=False)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(NameTaken), claimed(engine, "a"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with claimed(engine, "a"):
        pass


HOLD = """
import sys, time
from strata.leadership import claimed
from tenants import db
with claimed(db.open_engine(sys.argv[1]), "a"):
    print("held", flush=True)
    time.sleep(60)
"""
