"""HAProxy's runtime API and master CLI: one command per connection over a unix socket.

The runtime API (the worker's `stats socket`) changes maps and servers and reports state; the master CLI
reloads the configuration and lists the processes. Both answer plain text; a command the runtime API refuses
answers a message instead of raising, so callers that care check the answer (`expect`).
"""

import asyncio
import csv
import io
from pathlib import Path

TIMEOUT_SECONDS = 10.0
BACKENDS, SERVERS = 2, 4  # `show stat`'s object types


class HAProxyError(Exception):
    """HAProxy did not answer, or refused a command; the message says which and why."""


async def command(socket: Path, line: str, payload: str | None = None) -> str:
    """Send one command (with an optional `<<` payload) and return the whole answer."""
    if "\n" in line:
        raise ValueError(f"one command per call: {line!r}")
    data = f"{line} <<\n{payload}\n\n" if payload is not None else f"{line}\n"
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            reader, writer = await asyncio.open_unix_connection(str(socket))
            try:
                writer.write(data.encode())
                await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
                answer = await reader.read()
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        raise HAProxyError(f"HAProxy's socket {socket} did not answer {line.split()[0]!r}: {exc}") from None
    return answer.decode(errors="replace")


async def expect(socket: Path, line: str, *, ok: tuple[str, ...] = ("",), payload: str | None = None) -> str:
    """Run a command whose success is an empty answer or one of `ok`'s prefixes; raise with HAProxy's words."""
    answer = await command(socket, line, payload)
    text = answer.strip()
    if not any(text.startswith(prefix) if prefix else not text for prefix in ok):
        raise HAProxyError(f"HAProxy refused {line!r}: {text.splitlines()[0] if text else 'no answer'}")
    return answer


async def stats(socket: Path, backend: str | None = None, kinds: int | None = None) -> list[dict[str, str]]:
    """`show stat` as rows (one per frontend, backend and server; only `backend`'s servers if given, only the
    `kinds` of every proxy if given), keyed by the CSV's column names."""
    if backend is not None:
        kinds = SERVERS
    line = f"show stat {backend or -1} {kinds} -1" if kinds is not None else "show stat"
    answer = await command(socket, line)
    text = answer.lstrip("# ")
    return list(csv.DictReader(io.StringIO(text)))
