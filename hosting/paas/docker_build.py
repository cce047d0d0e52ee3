"""A build on a Docker engine, streamed: the Engine API's `/build` with the legacy builder.

Why the legacy builder, through the API: it runs each `RUN` step in a container created with the request's
`cpuperiod`/`cpuquota`/`memory`/`memswap`, so the tenant's plan caps every step, as it caps the app's
containers. BuildKit (`DOCKER_BUILDKIT=1 docker build`) ignores `--memory` and `--cpu-quota` and runs its
steps in the daemon's own cgroup, uncapped; and aiodocker's `images.build` sends none of these parameters, so the
request is made here with aiodocker's low-level `_query`.

The legacy builder's cache is the whole engine's: any image with the same parent and the same instruction is a
hit, whoever built it, so tenant B's `RUN` step identical to tenant A's would get A's layer (and whatever A's
step wrote, secrets included). With `cachefrom` set, the builder (moby's `MakeImageCache`, Docker 20.10) matches
only against the chains of the images listed and never the local cache at large; a build given none at all
runs with `nocache`. Measured here: the same Dockerfile built for A then for B with A's images not listed runs
B's `RUN` again; A's rebuild listing its own last image says "Using cache" for it.

The engine builds while the request's response is open: closing it (the consumer went away, the timeout passed)
makes the engine cancel the build and, with `forcerm`, remove the step's container.
"""

import asyncio
import codecs
import json
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aiodocker
import aiohttp

from hosting.paas.runtime import BuildFailed, BuildLimits, EngineUnavailable

BUILD_TIMEOUT_SECONDS = 600  # a build running longer is stopped and fails, saying so
CPU_PERIOD_MICROSECONDS = 100_000  # the CFS period the CPU quota is a share of (Docker's default)
READ_BYTES = 64 * 1024
MIB = 1024 * 1024
MAX_LINE_CHARS = 64 * 1024  # a longer line of output (no newline for that long) is split in pieces of this size
OOM_EXIT_CODE = 137  # a step killed by SIGKILL: the memory cap, most likely


def build_params(
    tag: str,
    limits: BuildLimits | None,
    labels: dict[str, str] | None,
    cache_from: list[str] | None = None,
    network: str | None = None,
) -> dict[str, Any]:
    """The query of `/build`: the tag, intermediate containers removed even on failure, the caps and labels,
    the cache it may use (None: the engine's; else only `cache_from`'s images, and none if it is empty), and
    the network its RUN steps join (`networkmode`, a network's name; None: the engine's default bridge)."""
    params: dict[str, Any] = {"t": tag, "rm": "1", "forcerm": "1"}
    if network:
        params["networkmode"] = network
    if cache_from:
        params["cachefrom"] = json.dumps(cache_from)
    elif cache_from is not None:
        params["nocache"] = "1"
    if labels:
        params["labels"] = json.dumps(labels)
    if limits is not None:
        memory = limits.memory_mib * MIB
        params |= {
            "cpuperiod": CPU_PERIOD_MICROSECONDS,
            "cpuquota": limits.cpu_millicores * CPU_PERIOD_MICROSECONDS // 1000,
            "memory": memory,
            "memswap": memory,  # no swap beyond the memory cap
        }
    return params


async def stream_build(
    docker: aiodocker.Docker,
    node: str,
    context: bytes | AsyncIterable[bytes],
    tag: str,
    limits: BuildLimits | None,
    labels: dict[str, str] | None,
    cache_from: list[str] | None = None,
    timeout: float = BUILD_TIMEOUT_SECONDS,
    *,
    network: str | None = None,
) -> AsyncGenerator[str, None]:
    """Build `tag` on `docker`, yielding the builder's output lines; see `NodeRuntime.build`."""
    deadline = asyncio.get_running_loop().time() + timeout
    data: Any = context if isinstance(context, bytes) else _Body(context)
    request = docker._query(
        "build",
        "POST",
        params=build_params(tag, limits, labels, cache_from, network),
        data=data,
        headers={"Content-Type": "application/x-tar"},
        timeout=aiohttp.ClientTimeout(total=None, connect=30),
    )
    try:
        async with AsyncExitStack() as stack:
            async with asyncio.timeout_at(deadline):
                response = await stack.enter_async_context(request)
            stack.callback(response.close)  # on any exit: the engine cancels a build whose client has gone
            lines = _Lines()
            while True:
                async with asyncio.timeout_at(deadline):
                    chunk = await response.content.read(READ_BYTES)
                if not chunk:
                    break
                for message in lines.feed(chunk):
                    if "error" in message:
                        raise BuildFailed(_explain(str(message["error"]), limits))
                    for line in lines.text(message):
                        yield line
            for line in lines.flush():
                yield line
    except TimeoutError:
        raise BuildFailed(f"the build ran over {timeout / 60:g} minutes and was stopped") from None
    except aiodocker.DockerError as exc:
        if exc.status == 900:  # aiodocker's "cannot connect"
            raise EngineUnavailable(f"docker on {node} does not answer ({exc.message})") from None
        raise BuildFailed(_explain(exc.message, limits)) from None
    except (aiohttp.ClientConnectionError, OSError) as exc:
        raise EngineUnavailable(f"docker on {node} does not answer ({exc})") from None


def _explain(error: str, limits: BuildLimits | None) -> str:
    """The builder's error, with what a bare exit code 137 most likely means under a memory cap."""
    error = error.strip()
    if limits is not None and error.endswith(f"returned a non-zero code: {OOM_EXIT_CODE}"):
        return f"{error} (killed: most likely over the build's memory cap of {limits.memory_mib} MiB)"
    return error


class _Lines:
    """The engine's answer is a stream of JSON messages (not necessarily one per chunk); their `stream` text
    comes in pieces of lines. This turns chunks into messages, and messages into whole lines, none longer than
    `max_line` (a longer one comes in pieces); a character split across chunks is decoded whole."""

    def __init__(self, max_line: int = MAX_LINE_CHARS) -> None:
        self._buffer = ""
        self._partial = ""
        self._max_line = max_line
        self._decoder = json.JSONDecoder()
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        self._buffer += self._utf8.decode(chunk)
        messages = []
        while True:
            text = self._buffer.lstrip()
            if not text:
                self._buffer = ""
                break
            try:
                message, end = self._decoder.raw_decode(text)
            except ValueError:
                self._buffer = text  # the rest of this message is in a later chunk
                break
            self._buffer = text[end:]
            if isinstance(message, dict):
                messages.append(message)
        return messages

    def text(self, message: dict[str, Any]) -> list[str]:
        piece = message.get("stream")
        if not isinstance(piece, str):
            status = message.get("status")
            return [str(status)] if status else []
        *whole, self._partial = (self._partial + piece).split("\n")
        lines = [cut for line in whole for cut in self._cut(line.rstrip("\r"))]
        if len(self._partial) > self._max_line:  # `RUN yes | tr -d '\n'`: never hold it all
            *pieces, self._partial = self._cut(self._partial)
            lines += pieces
        return lines

    def flush(self) -> list[str]:
        rest, self._partial = self._partial.rstrip("\r"), ""
        return self._cut(rest) if rest else []

    def _cut(self, line: str) -> list[str]:
        """The line in pieces of at most `max_line` characters (itself when it is short enough)."""
        if len(line) <= self._max_line:
            return [line]
        return [line[start : start + self._max_line] for start in range(0, len(line), self._max_line)]


class _Body:
    """An async iterable of bytes in the shape aiohttp takes as a request body."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks.__aiter__()
