"""The git hook's own client of the control API: the two calls `tui.ssh.receive` makes, on the standard library.

Why it exists: the `pre-receive` hook is a fresh Python process on every push, and its start-up is on the path
from the pack sent to the build starting. Importing `tenants.client` (httpx, pydantic and `tenants.schemas`) took
~250 ms of a ~1.0 s warm push (`python -X importtime -c "import tui.ssh.receive"`); `http.client` takes ~25 ms.

`tenants.client.StrataClient` stays the API's client for everything else (the CLI, the console, tests): keep the
two in step. Here: `GET /tenants/{t}/apps/{a}`, and `POST /tenants/{t}/apps/{a}/builds` with the tar streamed as a
chunked body and its NDJSON answer (`{"log": LINE}` lines, then `{"build": {...}}`) read line by line as it
arrives, over the daemon's unix socket. Refusals are `ApiError`, with the messages `tenants.client` gives.

Import nothing beyond the standard library here (a test checks that the hook imports no httpx or pydantic).
"""

import http.client
import json
import socket as sockets
from collections.abc import Iterable, Iterator
from urllib.parse import quote, urlencode

DEFAULT_TIMEOUT_SECONDS = 30.0
BUILD_CUT_OFF = "the daemon went away during the build; `strata builds list` shows how it ended"
SUCCEEDED = "succeeded"  # tenants.enums.BuildState.SUCCEEDED
UNCHANGED_PREFIX = "unchanged:"  # tenants.schemas.UNCHANGED_PREFIX


class ApiError(Exception):
    """The API refused: `status` is the HTTP status, `code` the stable reason, `field` the bad input."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


class DaemonUnavailable(ApiError):
    """Nothing answers where the daemon should be."""

    def __init__(self, where: str) -> None:
        super().__init__(
            0,
            "unavailable",
            f"the Strata daemon is not running (nothing answers on {where}); start it with `strata up`",
        )


class _UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over the daemon's unix socket (`Host: strata`, as `tenants.client` sends it)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("strata", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def unchanged(build: dict[str, object]) -> bool:
    """`BuildRead.unchanged` of the answer's build: it succeeded without deploying (the app ran that very image
    already, its message then starts with `unchanged:`); any other message of a succeeded build is not this."""
    message = build.get("message")
    return build.get("state") == SUCCEEDED and isinstance(message, str) and message.startswith(UNCHANGED_PREFIX)


class HookClient:
    """Calls to the control API on the unix socket `socket`, each on a connection of its own."""

    def __init__(self, *, socket: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.socket, self.timeout, self.where = socket, timeout, f"unix:{socket}"
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def app(self, tenant: str, name: str) -> dict[str, object]:
        """The app as the API shows it (`AppRead` as JSON): its `commit` is the one it runs, if built from git."""
        connection = _UnixConnection(self.socket, self.timeout)
        try:
            connection.request("GET", _path(tenant, "apps", name), headers=self._headers)
            response = connection.getresponse()
            body = response.read()
        except OSError as exc:
            raise DaemonUnavailable(self.where) from exc
        finally:
            connection.close()
        if response.status >= 400:
            raise _error(response.status, body)
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ApiError(response.status, "http", f"HTTP {response.status}: {body[:200].decode('utf-8', 'replace')}")
        return answer

    def build(
        self, tenant: str, app: str, context: Iterable[bytes], *, commit: str, source: str
    ) -> Iterator[str | dict[str, object]]:
        """Build TENANT/APP from the tar streamed as `context`'s chunks, as `StrataClient.build` does: yields each
        line of the build's output (a `str`) as it arrives, and last the build (`BuildRead` as JSON, a dict).
        Refusals before the build starts raise `ApiError` (409 a build of the app is running, ...); an answer
        cut off before the build's line raises `ApiError` saying so. Leaving early closes the connection, which
        stops the build."""
        target = f"{_path(tenant, 'apps', app, 'builds')}?{urlencode({'source': source, 'commit': commit})}"
        headers = {**self._headers, "Content-Type": "application/x-tar", "Transfer-Encoding": "chunked"}
        connection = _UnixConnection(self.socket, self.timeout)
        try:
            try:
                connection.connect()
            except OSError as exc:
                raise DaemonUnavailable(self.where) from exc
            try:
                connection.request("POST", target, body=iter(context), headers=headers, encode_chunked=True)
            except OSError:
                pass  # the API may refuse (409) before it takes the whole body: its answer, read next, says why
            try:
                connection.sock.settimeout(None)  # a step of the build may print nothing for minutes
                response = connection.getresponse()
                if response.status >= 400:
                    raise _error(response.status, response.read())
                while line := response.readline():
                    if not line.strip():
                        continue
                    message = json.loads(line)
                    if "build" in message:
                        yield message["build"]
                        return
                    yield str(message.get("log", ""))
            except (OSError, http.client.HTTPException) as exc:
                raise ApiError(0, "unavailable", BUILD_CUT_OFF) from exc
        finally:
            connection.close()
        raise ApiError(0, "unavailable", BUILD_CUT_OFF)


def _path(tenant: str, *parts: str) -> str:
    return "/tenants/" + "/".join(quote(part, safe="") for part in (tenant, *parts))


def _error(status: int, body: bytes) -> ApiError:
    """The API's error (`{"error": {"code", "message", "field"}}`), or what the answer was when it is not one."""
    try:
        error = json.loads(body)["error"]
        return ApiError(status, error["code"], error["message"], error.get("field"))
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace")
        return ApiError(status, "http", f"HTTP {status}: {text[:200]}")
