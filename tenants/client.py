"""The typed client of the control API, shared by the CLI and the console.

It speaks HTTP over the daemon's unix socket (or a TCP URL) and returns the API's own schemas, so a
caller never handles raw JSON. Refusals arrive as `ApiError` carrying the API's code, message and field.
"""

import json
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from tenants.catalog import Template, TemplateDeploy, TemplateDeployed
from tenants.enums import BuildSource, MemberRole, TenantStatus
from tenants.schemas import (
    AppRead,
    AppSpec,
    BackupRead,
    BackupRestore,
    BuildRead,
    CertificateRead,
    CertificateUpload,
    EventRead,
    Health,
    ImageRead,
    InstanceRead,
    KeyCreate,
    KeyRead,
    LocalCARead,
    MemberCreate,
    MemberRead,
    MemberRoleSet,
    NodeCreate,
    NodeRead,
    PlanRead,
    RegistryLogin,
    RegistryRead,
    RotationRead,
    Scale,
    ServiceBind,
    ServiceCreate,
    ServiceRead,
    SshKeyRead,
    StatusRead,
    TenantCreate,
    TenantImageRead,
    TenantRead,
    TenantSummary,
    TokenCreate,
    TokenCreated,
    TokenRead,
    TrafficRead,
    UsageReport,
    VolumeCreate,
    VolumeMove,
    VolumeRead,
    Whoami,
)

DEFAULT_TIMEOUT_SECONDS = 30.0
LONG_TIMEOUT_SECONDS = 600.0  # building or loading images onto every node, a backup, a restore, a service
BUILD_CUT_OFF = "the daemon went away during the build; `strata builds list` shows how it ended"


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


@dataclass(frozen=True)
class ExecTarget:
    """A WebSocket to open: over the daemon's unix socket when `socket` is set, else at `url` itself."""

    socket: Path | None
    url: str
    headers: dict[str, str]


class StrataClient:
    """One connection pool to the control API; use as a context manager or call `close()`."""

    def __init__(
        self,
        *,
        socket: Path | None = None,
        url: str | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if (socket is None) == (url is None):
            raise ValueError("give exactly one of socket= and url=")
        self.where = f"unix:{socket}" if socket else str(url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._socket, self._url, self._headers = socket, url, headers
        transport = httpx.HTTPTransport(uds=str(socket)) if socket else None
        self._http = httpx.Client(
            base_url=url or "http://strata",
            transport=transport,
            headers=headers,
            timeout=timeout,
        )

    def __enter__(self) -> "StrataClient":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def twin(self) -> "StrataClient":
        """Another client of the same API with the same token, on connections of its own: for a call that takes
        minutes while this one goes on serving others (close it after)."""
        token = self._headers.get("Authorization", "").removeprefix("Bearer ") or None
        return StrataClient(socket=self._socket, url=self._url, token=token)

    # platform
    def health(self) -> Health:
        return self._call("GET", "/healthz", Health)

    def status(self) -> StatusRead:
        """Which daemon leads, since when, and the daemons standing by (operators only)."""
        return self._call("GET", "/status", StatusRead)

    def plans(self) -> list[PlanRead]:
        return self._call("GET", "/plans", list[PlanRead])

    # tenants
    def summary(self) -> list[TenantSummary]:
        """Every visible tenant with readiness and traffic: the console's overview."""
        return self._call("GET", "/summary", list[TenantSummary])

    def catalog(self) -> list[Template]:
        return self._call("GET", "/catalog", list[Template])

    def deploy_template(self, tenant: str, template: str, body: TemplateDeploy) -> TemplateDeployed:
        """Deploy the catalog's `template` as app `body.app`: its services made unless the tenant has them (their
        image built first, the first time: minutes) and bound to it. Again: changes what `body` changed."""
        path = f"/tenants/{tenant}/catalog/{quote(template, safe='')}/deploy"
        return self._call("POST", path, TemplateDeployed, body=body, timeout=LONG_TIMEOUT_SECONDS)

    def tenants(self) -> list[TenantRead]:
        return self._call("GET", "/tenants", list[TenantRead])

    def tenant(self, name: str) -> TenantRead:
        return self._call("GET", f"/tenants/{name}", TenantRead)

    def create_tenant(self, spec: TenantCreate) -> TenantRead:
        return self._call("POST", "/tenants", TenantRead, body=spec)

    def set_tenant_status(self, name: str, status: TenantStatus) -> TenantRead:
        action = "suspend" if status == TenantStatus.SUSPENDED else "resume"
        return self._call("POST", f"/tenants/{name}/{action}", TenantRead)

    def delete_tenant(self, name: str) -> None:
        self._call("DELETE", f"/tenants/{name}", None)

    # apps
    def apps(self, tenant: str) -> list[AppRead]:
        return self._call("GET", f"/tenants/{tenant}/apps", list[AppRead])

    def app(self, tenant: str, name: str) -> AppRead:
        return self._call("GET", f"/tenants/{tenant}/apps/{name}", AppRead)

    def deploy(self, tenant: str, name: str, spec: AppSpec) -> AppRead:
        return self._call("PUT", f"/tenants/{tenant}/apps/{name}", AppRead, body=spec)

    def scale(self, tenant: str, name: str, replicas: int) -> AppRead:
        return self._call("POST", f"/tenants/{tenant}/apps/{name}/scale", AppRead, body=Scale(replicas=replicas))

    def restart(self, tenant: str, name: str) -> AppRead:
        return self._call("POST", f"/tenants/{tenant}/apps/{name}/restart", AppRead)

    def delete_app(self, tenant: str, name: str) -> None:
        self._call("DELETE", f"/tenants/{tenant}/apps/{name}", None)

    def instances(self, tenant: str, name: str) -> list[InstanceRead]:
        return self._call("GET", f"/tenants/{tenant}/apps/{name}/instances", list[InstanceRead])

    def logs(self, tenant: str, name: str, *, follow: bool = False, since: int | None = None) -> Iterator[str]:
        """The app's log lines, `[instance] text`; with `follow`, an endless stream until closed."""
        params = {"follow": follow, "since": since}
        query = {key: value for key, value in params.items() if value not in (None, False)}
        try:
            with self._http.stream(
                "GET", f"/tenants/{tenant}/apps/{name}/logs", params=query, timeout=None
            ) as response:
                if response.is_error:
                    response.read()
                    raise _error(response)
                yield from response.iter_lines()
        except (httpx.ConnectError, FileNotFoundError) as exc:
            raise DaemonUnavailable(self.where) from exc

    def traffic(self, tenant: str, name: str) -> TrafficRead:
        return self._call("GET", f"/tenants/{tenant}/apps/{name}/traffic", TrafficRead)

    async def follow_logs(self, tenant: str, name: str, *, since: int | None = None) -> AsyncIterator[str]:
        """`logs(follow=True)` for an event loop: cancelling the consumer closes the stream at once."""
        transport = httpx.AsyncHTTPTransport(uds=str(self._socket)) if self._socket else None
        params = {"follow": "true", **({"since": str(since)} if since else {})}
        async with httpx.AsyncClient(
            base_url=self._url or "http://strata", transport=transport, headers=self._headers, timeout=None
        ) as client:
            try:
                async with client.stream("GET", f"/tenants/{tenant}/apps/{name}/logs", params=params) as response:
                    if response.is_error:
                        await response.aread()
                        raise _error(response)
                    async for line in response.aiter_lines():
                        yield line
            except (httpx.ConnectError, FileNotFoundError) as exc:
                raise DaemonUnavailable(self.where) from exc

    def exec_target(self, tenant: str, app: str, instance: str, command: list[str], *, tty: bool) -> ExecTarget:
        """Where to open a WebSocket for a command in an instance (`/…/exec`), with this client's token."""
        query = "&".join([f"cmd={quote(word)}" for word in command] + (["tty=true"] if tty else []))
        return ExecTarget(
            socket=self._socket,
            url=f"{(self._url or 'http://strata').replace('http', 'ws', 1)}/tenants/{tenant}/apps/{app}"
            f"/instances/{instance}/exec?{query}",
            headers=self._headers,
        )

    # nodes and images
    def nodes(self) -> list[NodeRead]:
        return self._call("GET", "/nodes", list[NodeRead])

    def node(self, name: str) -> NodeRead:
        return self._call("GET", f"/nodes/{name}", NodeRead)

    def add_node(self, spec: NodeCreate) -> NodeRead:
        return self._call("POST", "/nodes", NodeRead, body=spec)

    def host_ssh_key(self) -> str:
        """The public key remote hosts must authorize for the platform to log in."""
        return self._call("GET", "/hosts/ssh-key", SshKeyRead).public_key

    def drain_node(self, name: str) -> NodeRead:
        return self._call("POST", f"/nodes/{name}/drain", NodeRead)

    def resume_node(self, name: str) -> NodeRead:
        return self._call("POST", f"/nodes/{name}/resume", NodeRead)

    def remove_node(self, name: str, *, force: bool = False) -> NodeRead:
        return self._call("DELETE", f"/nodes/{name}", NodeRead, params={"force": force})

    def images(self) -> list[ImageRead]:
        return self._call("GET", "/images", list[ImageRead])

    def tenant_images(self, tenant: str) -> list[TenantImageRead]:
        """The images TENANT owns: pulled with its registry logins or built from its source."""
        return self._call("GET", f"/tenants/{tenant}/images", list[TenantImageRead])

    # registry logins
    def volumes(self, tenant: str | None = None) -> list[VolumeRead]:
        """The volumes of `tenant`, or of every tenant the caller may see."""
        return self._call("GET", "/volumes", list[VolumeRead], params={"tenant": tenant})

    def volume(self, tenant: str, name: str) -> VolumeRead:
        return self._call("GET", f"/tenants/{tenant}/volumes/{name}", VolumeRead)

    def create_volume(self, tenant: str, body: VolumeCreate) -> VolumeRead:
        return self._call("POST", f"/tenants/{tenant}/volumes", VolumeRead, body=body)

    def move_volume(self, tenant: str, name: str, node: str) -> VolumeRead:
        """Move the volume to `node` with its app: returns once it is there (its app's instance stopped first)."""
        body = VolumeMove(node=node)
        path = f"/tenants/{tenant}/volumes/{name}/move"
        return self._call("POST", path, VolumeRead, body=body, timeout=LONG_TIMEOUT_SECONDS)

    def delete_volume(self, tenant: str, name: str, *, force: bool = False) -> None:
        self._call("DELETE", f"/tenants/{tenant}/volumes/{name}", None, params={"force": force or None})

    def services(self, tenant: str | None = None) -> list[ServiceRead]:
        """The services of `tenant`, or of every tenant the caller may see."""
        return self._call("GET", "/services", list[ServiceRead], params={"tenant": tenant})

    def service(self, tenant: str, name: str) -> ServiceRead:
        return self._call("GET", f"/tenants/{tenant}/services/{name}", ServiceRead)

    def create_service(self, tenant: str, body: ServiceCreate) -> ServiceRead:
        """Make the service (its image built first, the first time: minutes)."""
        return self._call("POST", f"/tenants/{tenant}/services", ServiceRead, body=body, timeout=LONG_TIMEOUT_SECONDS)

    def delete_service(self, tenant: str, name: str, *, force: bool = False) -> None:
        self._call("DELETE", f"/tenants/{tenant}/services/{name}", None, params={"force": force or None})

    def bind_service(self, tenant: str, name: str, app: str) -> None:
        self._call("POST", f"/tenants/{tenant}/services/{name}/bindings", None, body=ServiceBind(app=app))

    def unbind_service(self, tenant: str, name: str, app: str) -> None:
        self._call("DELETE", f"/tenants/{tenant}/services/{name}/bindings/{app}", None)

    def rotate_service_credentials(self, tenant: str, name: str) -> RotationRead:
        """A new login for the bound apps, the old one retired once they run with it (waits for that: minutes)."""
        return self._call(
            "POST", f"/tenants/{tenant}/services/{name}/credentials/rotate", RotationRead, timeout=LONG_TIMEOUT_SECONDS
        )

    def backups(self, tenant: str | None = None) -> list[BackupRead]:
        """The backups of `tenant`, or of every tenant the caller may see, newest first."""
        return self._call("GET", "/backups", list[BackupRead], params={"tenant": tenant})

    def create_backup(self, tenant: str, volume: str) -> BackupRead:
        """Back the volume up and verify it: returns once it is verified or failed."""
        return self._call(
            "POST", f"/tenants/{tenant}/volumes/{volume}/backups", BackupRead, timeout=LONG_TIMEOUT_SECONDS
        )

    def restore_backup(self, tenant: str, backup_id: int, volume: str | None = None) -> VolumeRead:
        body = BackupRestore(volume=volume)
        return self._call(
            "POST",
            f"/tenants/{tenant}/backups/{backup_id}/restore",
            VolumeRead,
            body=body,
            timeout=LONG_TIMEOUT_SECONDS,
        )

    def delete_backup(self, tenant: str, backup_id: int) -> None:
        self._call("DELETE", f"/tenants/{tenant}/backups/{backup_id}", None)

    def registries(self, tenant: str) -> list[RegistryRead]:
        return self._call("GET", f"/tenants/{tenant}/registries", list[RegistryRead])

    def add_registry(self, tenant: str, host: str, login: RegistryLogin) -> RegistryRead:
        """Store (or replace) TENANT's login to registry HOST[:PORT]; the password is sent once, never read back."""
        return self._call("PUT", f"/tenants/{tenant}/registries/{quote(host, safe=':')}", RegistryRead, body=login)

    def remove_registry(self, tenant: str, host: str) -> None:
        self._call("DELETE", f"/tenants/{tenant}/registries/{quote(host, safe=':')}", None)

    def bootstrap_images(self) -> list[str]:
        return self._call("POST", "/images/bootstrap", list[str], timeout=LONG_TIMEOUT_SECONDS)

    def load_images(self, archive: Path) -> list[str]:
        """Upload a `docker save` archive, streamed from disk, to be loaded onto every node."""
        with archive.open("rb") as file:
            return self._call(
                "POST",
                "/images/load",
                list[str],
                raw=file,
                timeout=LONG_TIMEOUT_SECONDS,
                headers={"Content-Type": "application/x-tar"},
            )

    # builds
    def build(
        self,
        tenant: str,
        app: str,
        context: bytes | Iterable[bytes],
        *,
        commit: str | None = None,
        source: BuildSource = BuildSource.UPLOAD,
    ) -> Iterator[str | BuildRead]:
        """Build TENANT/APP from a tar of its build context and deploy it as a new revision (a new app is made).

        `context` is the tar as bytes, or streamed as it is made: any iterable of byte chunks, or a binary file
        (read in chunks). Yields each line of the build's output (a `str`) as the build prints it, and last the
        `BuildRead`: `state` "succeeded" (with the `revision`; `message` "unchanged: ..." when the app ran that
        image already) or "failed" with the builder's `message`. Refusals before the build starts raise
        `ApiError` (409 a build of the app is running, 422 no Dockerfile, a quota). Synchronous, for plain
        scripts such as a git hook::

            with StrataClient(socket=home / "api.sock", token=token) as client:
                for item in client.build("acme", "web", tar_chunks, commit=sha, source=BuildSource.GIT):
                    if isinstance(item, BuildRead):
                        ok = item.state == BuildState.SUCCEEDED
                    else:
                        print("remote:", item)

        Leaving the loop early, or the process ending, closes the request, which stops the build.
        """
        params = {"source": str(source), **({"commit": commit} if commit else {})}
        timeout = httpx.Timeout(DEFAULT_TIMEOUT_SECONDS, read=None)  # a step may print nothing for minutes
        try:
            with self._http.stream(
                "POST",
                f"/tenants/{tenant}/apps/{app}/builds",
                content=context,
                params=params,
                headers={"Content-Type": "application/x-tar"},
                timeout=timeout,
            ) as response:
                if response.is_error:
                    response.read()
                    raise _error(response)
                for line in response.iter_lines():
                    if not line:
                        continue
                    message = json.loads(line)
                    if "build" in message:
                        yield BuildRead.model_validate(message["build"])
                        return
                    yield str(message.get("log", ""))
        except (httpx.ConnectError, FileNotFoundError) as exc:
            raise DaemonUnavailable(self.where) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise ApiError(0, "unavailable", BUILD_CUT_OFF) from exc
        raise ApiError(0, "unavailable", BUILD_CUT_OFF)

    def builds(self, tenant: str | None = None, app: str | None = None, limit: int = 100) -> list[BuildRead]:
        """Builds newest first: one tenant's (of one app), or every visible tenant's."""
        params = {"app": app, "limit": limit}
        if tenant is None:
            return self._call("GET", "/builds", list[BuildRead], params=params)
        return self._call("GET", f"/tenants/{tenant}/builds", list[BuildRead], params=params)

    def build_log(self, tenant: str, build_id: int) -> str:
        """A build's output (so far, while it runs) and how it ended."""
        try:
            response = self._http.get(f"/tenants/{tenant}/builds/{build_id}/log")
        except (httpx.ConnectError, httpx.RemoteProtocolError, FileNotFoundError) as exc:
            raise DaemonUnavailable(self.where) from exc
        if response.is_error:
            raise _error(response)
        return response.text

    # credentials
    def keys(self, tenant: str | None = None) -> list[KeyRead]:
        return self._call("GET", "/keys", list[KeyRead], params={"tenant": tenant})

    def add_key(self, spec: KeyCreate) -> KeyRead:
        return self._call("POST", "/keys", KeyRead, body=spec)

    def remove_key(self, key_id: int) -> None:
        self._call("DELETE", f"/keys/{key_id}", None)

    def tokens(self, tenant: str | None = None) -> list[TokenRead]:
        return self._call("GET", "/tokens", list[TokenRead], params={"tenant": tenant})

    def create_token(self, spec: TokenCreate) -> TokenCreated:
        return self._call("POST", "/tokens", TokenCreated, body=spec)

    def revoke_token(self, token_id: int) -> None:
        self._call("DELETE", f"/tokens/{token_id}", None)

    # HTTPS certificates
    def certificates(self) -> list[CertificateRead]:
        return self._call("GET", "/certs", list[CertificateRead])

    def add_certificate(self, hostname: str, upload: CertificateUpload) -> CertificateRead:
        """Serve HOSTNAME with an operator's certificate and key (PEM); the key is never read back."""
        return self._call("PUT", f"/certs/{hostname}", CertificateRead, body=upload)

    def local_ca(self) -> str:
        """The local CA's certificate (PEM), to trust for apps under the default domain."""
        return self._call("GET", "/ca", LocalCARead).certificate_pem

    # audit log
    def events(
        self, tenant: str | None = None, limit: int = 100, before: int | None = None, member: str | None = None
    ) -> list[EventRead]:
        params = {"tenant": tenant, "member": member, "limit": limit, "before": before}
        return self._call("GET", "/events", list[EventRead], params=params)

    def whoami(self) -> Whoami:
        return self._call("GET", "/whoami", Whoami)

    def usage(self, tenant: str | None = None, since: date | None = None) -> UsageReport:
        """Metered usage from `since` (the daemon's default: this month): every visible tenant's, or `tenant`'s."""
        params = {"since": since.isoformat() if since else None}
        if tenant is None:
            return self._call("GET", "/usage", UsageReport, params=params)
        return self._call("GET", f"/tenants/{tenant}/usage", UsageReport, params=params)

    def members(self, tenant: str) -> list[MemberRead]:
        return self._call("GET", f"/tenants/{tenant}/members", list[MemberRead])

    def add_member(self, tenant: str, body: MemberCreate) -> MemberRead:
        return self._call("POST", f"/tenants/{tenant}/members", MemberRead, body=body)

    def set_member_role(self, tenant: str, name: str, role: MemberRole) -> MemberRead:
        return self._call("PUT", f"/tenants/{tenant}/members/{name}/role", MemberRead, body=MemberRoleSet(role=role))

    def remove_member(self, tenant: str, name: str) -> None:
        self._call("DELETE", f"/tenants/{tenant}/members/{name}", None)

    def _call(
        self,
        method: str,
        path: str,
        result: Any,
        *,
        body: BaseModel | None = None,
        params: dict[str, Any] | None = None,
        raw: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
    ) -> Any:
        """One request; `body` goes as JSON, `raw` (bytes or a file) as it is."""
        query = {key: value for key, value in (params or {}).items() if value is not None}
        content = body.model_dump_json().encode() if body is not None else raw
        if body is not None:
            headers = {"Content-Type": "application/json"}
        try:
            response = self._http.request(method, path, content=content, params=query, headers=headers, timeout=timeout)
        except (httpx.ConnectError, httpx.RemoteProtocolError, FileNotFoundError) as exc:
            raise DaemonUnavailable(self.where) from exc
        if response.is_error:
            raise _error(response)
        if result is None:
            return None
        return TypeAdapter(result).validate_json(response.content)


def _error(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(response.status_code, error["code"], error["message"], error.get("field"))
    except (ValueError, KeyError, TypeError):
        return ApiError(response.status_code, "http", f"HTTP {response.status_code}: {response.text[:200]}")
