"""Health checks of instances: an HTTP GET of the app's health path, a TCP connect when it has none, or for a
managed PostgreSQL the start of a login, as `pg_isready` does it (a server replaying its WAL listens, but
refuses sessions: only one that asks for a password takes them).

A connect alone proves nothing where Docker publishes ports through `docker-proxy` (its default, and the only
way to 127.0.0.1 without `route_localnet`): the proxy accepts at once, then closes the connection when nothing
listens in the container. So a TCP check passes only if the connection stays open for `LINGER_SECONDS` (or
the app speaks first).

httpx is fine here (a few requests a second, not the hot path); its client keeps no cookies, so one
app's Set-Cookie can never reach another app's check.
"""

import asyncio
import struct
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from tenants.enums import AppKind

HEALTH_TIMEOUT_SECONDS = 2.0
LINGER_SECONDS = 0.2  # docker-proxy closes within a millisecond or two of finding no listener, even under load
OK = "ok"
REFUSED = "refused"
CLOSED = "the connection closed at once (is the app listening on that port?)"
PROTOCOL_3 = 196608  # PostgreSQL's protocol 3.0
STARTUP = b"user\x00strata-health\x00database\x00postgres\x00\x00"  # no such role: it logs in nowhere
MAX_ANSWER = 512


class HealthChecker:
    def __init__(self, timeout: float = HEALTH_TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        self._http = httpx.AsyncClient(
            timeout=timeout,
            cookies=no_cookies,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),  # apps may close after each answer
        )

    async def check(self, endpoint: str, path: str | None, kind: str = AppKind.WEB) -> str:
        """ "ok", or why not in a few words that `apps show` prints as they are ("HTTP 503", "refused", ...)."""
        if kind == AppKind.POSTGRES:
            return await self._postgres(endpoint)
        if path is None:
            return await self._connect(endpoint)
        try:
            response = await self._http.get(f"http://{endpoint}{path}", headers={"User-Agent": "strata-health"})
        except httpx.TimeoutException:
            return self._silent
        except httpx.ConnectError:
            return REFUSED
        except httpx.RemoteProtocolError:
            return "no HTTP answer (the connection closed, or another protocol answered)"
        except httpx.HTTPError as exc:
            return f"the connection failed ({type(exc).__name__})"
        return OK if 200 <= response.status_code < 400 else f"HTTP {response.status_code}"

    @property
    def _silent(self) -> str:
        return f"no answer within {self.timeout:g} s"

    async def _connect(self, endpoint: str) -> str:
        host, _, port = endpoint.rpartition(":")
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), self.timeout)
        except TimeoutError:
            return self._silent
        except ConnectionResetError:
            return CLOSED  # accepted, then reset before the connect was seen through
        except OSError:
            return REFUSED
        try:
            first = await asyncio.wait_for(reader.read(1), LINGER_SECONDS)
        except TimeoutError:
            return OK  # still open: something listens
        except OSError:
            return CLOSED  # reset
        finally:
            writer.close()
        return OK if first else CLOSED

    async def _postgres(self, endpoint: str) -> str:
        """A startup message (protocol 3.0); the server's first answer says whether it takes sessions: a request
        for authentication does, an error (57P03: starting up, recovering) does not. The login goes no further."""
        host, _, port = endpoint.rpartition(":")
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), self.timeout)
        except TimeoutError:
            return self._silent
        except OSError:
            return REFUSED
        try:
            writer.write(struct.pack("!ii", 8 + len(STARTUP), PROTOCOL_3) + STARTUP)
            answer = await asyncio.wait_for(reader.read(MAX_ANSWER), self.timeout)
        except TimeoutError:
            return self._silent
        except OSError:
            return CLOSED
        finally:
            writer.close()
        if answer[:1] == b"R":
            return OK
        if answer[:1] == b"E":
            fields = dict((part[:1], part[1:]) for part in answer[5:].split(b"\x00") if part)
            return f"PostgreSQL takes no session yet: {fields.get(b'M', b'').decode(errors='replace')}"
        return CLOSED if not answer else "no PostgreSQL answer (another protocol answered)"

    async def close(self) -> None:
        await self._http.aclose()
