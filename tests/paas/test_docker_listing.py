"""`DockerRuntime.containers` on the real engine: the last listing is given again while the engine's events say
none of the platform's containers changed, and a change made behind the platform's back (a start, a removal) is
in the next listing, well before a kept listing is made again anyway (`RELIST_SECONDS`); and a container that
exited as it was listed is not given as exited once it runs again."""

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
            # The engine's past events (the create), replayed as the stream opened, may make a listing or two
            # more; then one is given again while nothing happens.
            listed, started = await runtime.containers(platform), time.monotonic()
            while (again := await runtime.containers(platform)) is not listed:
                assert time.monotonic() - started < SEEN_WITHIN_SECONDS, "no listing is kept"
                listed = again
                await asyncio.sleep(0.1)
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


def test_a_container_that_exits_as_it_is_listed_is_listed_running_again_once_restarted() -> None:
    """A crash as the engine is asked (listed running, inspected exited, as when a crash follows a start closely),
    then a restart by the runtime: the next listings give it running, not the exit inspected under `running`
    (which a pass took for a crash again, and again: a crash loop of a running container, seen in CI)."""
    platform = f"restart{secrets.token_hex(4)}"
    labels = {"platform": platform, "tenant": "acme", "app": "web", "revision": "1", "instance": "d4e5f6"}

    async def scenario() -> None:
        runtime = DockerRuntime("local", DOCKER_URL)
        container = ""
        try:
            await images.bootstrap([runtime])
            flags = [f"--label=strata.{key}={value}" for key, value in labels.items()]
            container = (await asyncio.to_thread(docker, "run", "-d", *flags, "strata/hello")).strip()
            await asyncio.to_thread(docker, "kill", "--signal=USR1", container)  # as /crash: exit 3, about now
            await listed_until(runtime, platform, lambda found: [c.exit_code for c in found] == [3])
            await runtime.start(container)
            await listed_until(
                runtime, platform, lambda found: [(c.running, c.exit_code) for c in found] == [(True, None)]
            )
        finally:
            if container:
                await asyncio.to_thread(docker, "rm", "-f", container)
            await runtime.close()

    asyncio.run(scenario())
