"""The gateway's admin listener: `GET /metrics` (Prometheus text) and `GET /healthz`, nothing else."""

import asyncio

from gateway.server import Gateway

READ_TIMEOUT = 5.0
MAX_REQUEST = 8 * 1024


async def serve_admin(gateway: Gateway, host: str, port: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            method, path, *_ = head[:MAX_REQUEST].split(b" ", 2)
            if method != b"GET":
                status, body, kind = b"405 Method Not Allowed", b"GET only\n", b"text/plain"
            elif path == b"/metrics":
                status, body, kind = b"200 OK", gateway.prometheus().encode(), b"text/plain; version=0.0.4"
            elif path == b"/healthz":
                status, body, kind = b"200 OK", b"ok\n", b"text/plain"
            else:
                status, body, kind = b"404 Not Found", b"/metrics or /healthz\n", b"text/plain"
            writer.write(
                b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (status, kind, len(body), body)
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port, limit=MAX_REQUEST)
