"""A standby probes its engines for its own API: one that hangs is given up, not waited on (the standby's front
door reads its routes between probes)."""

import asyncio

import pytest

from hosting.paas import nodes
from hosting.paas.fake_runtime import FakeRuntime
from hosting.paas.nodes import NodeHandle
from hosting.paas.runtime import Capacity


class HungEngine(FakeRuntime):
    async def capacity(self) -> Capacity:
        await asyncio.Event().wait()  # never answers
        raise AssertionError("unreachable")


def test_an_engine_that_does_not_answer_a_probe_is_taken_as_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodes, "PROBE_SECONDS", 0.05)
    hung, answering = NodeHandle(HungEngine("hung"), "docker", "x"), NodeHandle(FakeRuntime("fine"), "docker", "y")

    async def probe_both() -> None:
        async with asyncio.timeout(5):
            await asyncio.gather(hung.probe(), answering.probe())

    asyncio.run(probe_both())
    assert (hung.reachable, answering.reachable) == (False, True)
