"""`DockerRuntime.pull` against a fake engine (aiohttp on a unix socket) that answers a pull with one progress line
and then nothing: however the consumer stops (the generator closed, its task cancelled), the engine sees its
response closed at once, not whenever the garbage collector gets to it. No Docker needed."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from hosting.paas.docker_runtime import DockerRuntime
from hosting.paas.runtime import RegistryAuth


class Engine:
    """Counts the pull requests open on it; `gone` is set when the client has closed one."""

    def __init__(self) -> None:
        self.open = 0
        self.gone = asyncio.Event()
        self.auth: str | None = None

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"ApiVersion": "1.43", "Version": "fake"})

    async def create(self, request: web.Request) -> web.StreamResponse:
        self.auth = request.headers.get("X-Registry-Auth")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        line = {"status": "Downloading", "id": "layer1", "progressDetail": {"current": 1, "total": 10}}
        await response.write(json.dumps(line).encode() + b"\r\n")
        self.open += 1
        try:
            while request.transport is not None and not request.transport.is_closing():
                await asyncio.sleep(0.01)  # a registry that stalls: the engine sends nothing more
        finally:
            self.open -= 1
            self.gone.set()
        return response


@asynccontextmanager
async def fake_engine(socket: Path) -> AsyncIterator[Engine]:
    engine = Engine()
    app = web.Application()
    app.router.add_get("/version", engine.version)
    app.router.add_post("/v1.43/images/create", engine.create)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.UnixSite(runner, str(socket)).start()
    try:
        yield engine
    finally:
        await runner.cleanup()


def test_a_pull_closed_by_its_consumer_closes_the_engines_response(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with fake_engine(tmp_path / "docker.sock") as engine:
            runtime = DockerRuntime("fake", f"unix://{tmp_path / 'docker.sock'}")
            try:
                pulling = runtime.pull("registry.example.com/team/web:1", RegistryAuth("alice", "s3cret"))
                first = await anext(pulling)
                assert (first.done_bytes, first.total_bytes) == (1, 10) and engine.open == 1
                assert engine.auth is not None  # the login went in the header
                await pulling.aclose()  # e.g. the consumer broke out of its loop
                await asyncio.wait_for(engine.gone.wait(), 2)
                assert engine.open == 0
            finally:
                await runtime.close()

    asyncio.run(scenario())


def test_a_cancelled_pull_task_closes_the_engines_response(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with fake_engine(tmp_path / "docker.sock") as engine:
            runtime = DockerRuntime("fake", f"unix://{tmp_path / 'docker.sock'}")
            started = asyncio.Event()

            async def consume() -> None:
                async for _ in runtime.pull("registry.example.com/team/web:1", None):
                    started.set()

            try:
                task = asyncio.create_task(consume())
                await asyncio.wait_for(started.wait(), 2)
                task.cancel()  # as `ImagePuller` cancels the pull of an app deleted or redeployed meanwhile
                await asyncio.gather(task, return_exceptions=True)
                await asyncio.wait_for(engine.gone.wait(), 2)
                assert engine.open == 0
            finally:
                await runtime.close()

    asyncio.run(scenario())
