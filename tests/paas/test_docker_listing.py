"""`DockerRuntime.containers` on the real engine: the last listing is given again while the engine's events say
none of the platform's containers changed, and a change made behind the platform's back (a start, a removal) is
in the next listing, well before a kept listing is made again anyway (`RELIST_SECONDS`)."""

import asyncio
import os
import secrets
import time
from collections.abc import Callable

from hosting.paas import images
from hosting.paas.docker_runtime import DockerRuntime
from hosting.paas.engine_events import RELIST_SECONDS
from hosting.paas.runtime import Container
from strata.config import DEFAULT_DOCKER_URL
from tests.containers import docker

DOCKER_URL = os.environ.get("DOCKER_HOST", DEFAULT_DOCKER_URL)
SEEN_WITHIN_SECONDS = 5.0  # a change is in a listing this soon: half of RELIST_SECONDS, so only an event explains it


async def listed_until(runtime: DockerRuntime, platform: str, wanted: Callable[[list[Container]], bool]) -> float:
    """Seconds until a listing is as `wanted`, listing as a pass would (every 0.1 s); fails after the bound."""
    started = time.monotonic()
    while not wanted(await runtime.containers(platform)):
        assert time.monotonic() - started < SEEN_WITHIN_SECONDS, "the change is not in the listing"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def test_a_listing_is_kept_until_the_engine_says_a_container_changed() -> None:
    assert SEEN_WITHIN_SECONDS < RELIST_SECONDS
    platform = f"listing{secrets.token_hex(4)}"
    labels = {"platform": platform, "tenant": "acme", "app": "web", "revision": "1", "instance": "a1b2c3"}

    async def scenario() -> None:
        runtime = DockerRuntime("local", DOCKER_URL)
        container = ""
        try:
            await images.bootstrap([runtime])  # strata/hello, built offline unless the engine has it
            flags = [f"--label=strata.{key}={value}" for key, value in labels.items()]
            container = (await asyncio.to_thread(docker, "create", *flags, "strata/hello")).strip()
            await listed_until(runtime, platform, lambda found: runtime._watch.open)  # the events are followed
            listed = await runtime.containers(platform)
            assert [(c.id, c.running) for c in listed] == [(container, False)]
            assert await runtime.containers(platform) is listed  # kept: nothing happened

            await asyncio.to_thread(docker, "start", container)
            await listed_until(runtime, platform, lambda found: [c.running for c in found] == [True])
            await asyncio.to_thread(docker, "rm", "-f", container)
            await listed_until(runtime, platform, lambda found: found == [])
        finally:
            if container:
                await asyncio.to_thread(docker, "rm", "-f", container)
            await runtime.close()

    asyncio.run(scenario())
