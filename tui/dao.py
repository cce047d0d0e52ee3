"""Data access for the console: everything it shows comes from the control API, through its token.

Calls are blocking (httpx) and made from worker threads; one lock keeps them one at a time on the shared
client. Whether the token is an operator's is learnt once, from the API's own answer.
"""

import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import httpx

from tenants import roles
from tenants.catalog import Template, TemplateDeploy, TemplateDeployed
from tenants.client import ApiError, StrataClient
from tenants.enums import TenantStatus
from tenants.schemas import (
    AppRead,
    AppSpec,
    BuildRead,
    EventRead,
    NodeRead,
    ServiceRead,
    StatusRead,
    TenantCreate,
    TenantRead,
    TenantSummary,
    TrafficRead,
    UsageReport,
    VolumeRead,
    Whoami,
)

T = TypeVar("T")
LOG_BACKLOG_SECONDS = 300
BUILDS_SHOWN = 5  # a tenant's latest builds on its screen; `strata builds` lists them all


@dataclass(frozen=True)
class NodeShare:
    """A node as one tenant uses it: the tenant's own instances there and what they claim (CPU, memory), and its
    volumes kept there (on a VM node, disks of the VM), beside the node's own figures, all tenants together
    (`node`: None for a tenant's token, which may not see nodes)."""

    name: str
    instances: int
    cpu_millicores: int
    memory_mib: int
    node: NodeRead | None
    disks: tuple[VolumeRead, ...] = ()


@dataclass(frozen=True)
class TenantDetail:
    """One tenant across the three layers: its nodes (IaaS), apps and instances (PaaS), traffic (SaaS); its
    latest builds from source, newest first, its volumes, and its services (each also an app of its own)."""

    tenant: TenantRead
    apps: list[AppRead]
    nodes: list[NodeShare]  # those its instances run on
    traffic: dict[str, TrafficRead]
    builds: list[BuildRead] = field(default_factory=list)
    volumes: list[VolumeRead] = field(default_factory=list)
    services: list[ServiceRead] = field(default_factory=list)


def shares(
    apps: Sequence[AppRead], nodes: Sequence[NodeRead] | None, volumes: Sequence[VolumeRead] = ()
) -> list[NodeShare]:
    """The nodes `apps`' instances run on or `volumes` live on, by name, with what those instances claim there
    (each its app's CPU and memory, as the nodes' own allocation counts them); `nodes` are every node, or None
    when they may not be seen."""
    placed: dict[str, list[AppRead]] = {}
    for app in apps:
        for instance in app.instances:
            placed.setdefault(instance.node, []).append(app)
    kept: dict[str, list[VolumeRead]] = {}
    for volume in volumes:
        kept.setdefault(volume.node, []).append(volume)
    known = {node.name: node for node in nodes or ()}
    return [
        NodeShare(
            name=name,
            instances=len(placed.get(name, [])),
            cpu_millicores=sum(app.cpu_millicores for app in placed.get(name, [])),
            memory_mib=sum(app.memory_mib for app in placed.get(name, [])),
            node=known.get(name),
            disks=tuple(kept.get(name, [])),
        )
        for name in sorted(placed.keys() | kept.keys())
    ]


class ConsoleData:
    def __init__(self, client: StrataClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._operator: bool | None = None
        self._whoami: Whoami | None = None

    @property
    def is_operator(self) -> bool:
        """Whether the token is an operator's, learnt from the API's first answer (so it may ask, and raise)."""
        if self._operator is None:
            try:
                self._call(self.client.nodes)
                self._operator = True
            except ApiError as exc:
                if exc.status != 403:
                    raise
                self._operator = False
        return self._operator

    @property
    def known_operator(self) -> bool:
        """True once the API has said the token is an operator's; never asks, so the UI thread may use it to offer
        operator keys only when they would work (a tenant's token, or one not yet known, gets none)."""
        return bool(self._operator)

    def whoami(self) -> Whoami:
        """Who the token stands for, asked at each load of a screen that offers changes (a worker's call): its
        member's role, as it is now, decides what is offered."""
        self._whoami = self._call(self.client.whoami)
        return self._whoami

    def refusal(self, tenant: str, operation: roles.Operation, what: str) -> str | None:
        """Why the caller may not do `operation` (offered as `what`) in `tenant`, or None if it may, or its role
        is not known yet (the API decides all the same). Never asks: the UI thread uses it."""
        role = self._whoami.member_role if self._whoami is not None else None
        if role is None or roles.allows(role, *operation):
            return None
        who = f"{self._whoami.member} is" if self._whoami and self._whoami.member else "this token is"
        return roles.refusal(who, tenant, role, *operation, what)

    @property
    def own_tenant(self) -> str | None:
        """A tenant token's tenant (None for an operator)."""
        if self.is_operator:
            return None
        summaries = self.overview()
        return summaries[0].name if summaries else None

    def catalog(self) -> list[Template]:
        return self._call(self.client.catalog)

    def overview(self) -> list[TenantSummary]:
        return self._call(self.client.summary)

    def tenant(self, name: str) -> TenantDetail:
        tenant = self._call(lambda: self.client.tenant(name))
        apps = self._call(lambda: self.client.apps(name))
        traffic = {app.name: self._call(partial(self.client.traffic, name, app.name)) for app in apps}
        builds = self.builds(name)
        volumes = self.volumes(name)
        nodes = shares(apps, self.nodes() if self.is_operator else None, volumes)
        self.whoami()
        return TenantDetail(tenant, apps, nodes, traffic, builds, volumes, self.services(name))

    def builds(self, tenant: str, app: str | None = None, limit: int = BUILDS_SHOWN) -> list[BuildRead]:
        """The tenant's latest builds (of `app`), newest first."""
        return self._call(lambda: self.client.builds(tenant, app, limit=limit))

    def volumes(self, tenant: str) -> list[VolumeRead]:
        return self._call(lambda: self.client.volumes(tenant))

    def services(self, tenant: str) -> list[ServiceRead]:
        return self._call(lambda: self.client.services(tenant))

    def build_log(self, tenant: str, build_id: int) -> str:
        """A build's output so far (all of it, and how it ended, once it has)."""
        return self._call(lambda: self.client.build_log(tenant, build_id))

    def nodes(self) -> list[NodeRead]:
        return self._call(self.client.nodes)

    def status(self) -> StatusRead:
        """Which daemon leads the platform, since when (operators)."""
        return self._call(self.client.status)

    def events(self, tenant: str | None = None) -> list[EventRead]:
        return self._call(lambda: self.client.events(tenant, limit=200))

    def usage(self) -> UsageReport:
        """This month's metered usage of every tenant the token sees, with their plans."""
        return self._call(self.client.usage)

    def logs(self, tenant: str, app: str) -> AsyncIterator[str]:
        """An endless stream of the app's log lines from the last 5 minutes on (its own connection)."""
        return self.client.follow_logs(tenant, app, since=LOG_BACKLOG_SECONDS)

    # actions

    def create_tenant(self, name: str, plan: str) -> TenantRead:
        return self._call(lambda: self.client.create_tenant(TenantCreate(name=name, plan=plan)))

    def set_status(self, name: str, status: TenantStatus) -> TenantRead:
        return self._call(lambda: self.client.set_tenant_status(name, status))

    def delete_tenant(self, name: str) -> None:
        self._call(lambda: self.client.delete_tenant(name))

    def deploy(self, tenant: str, app: str, spec: AppSpec) -> AppRead:
        return self._call(lambda: self.client.deploy(tenant, app, spec))

    def deploy_template(self, tenant: str, template: str, body: TemplateDeploy) -> TemplateDeployed:
        """Minutes when it builds an image: on a client of its own, so the screens' calls go on meanwhile."""
        with self.client.twin() as own:
            return self._unlocked(lambda: own.deploy_template(tenant, template, body))

    def scale(self, tenant: str, app: str, replicas: int) -> AppRead:
        return self._call(lambda: self.client.scale(tenant, app, replicas))

    def restart(self, tenant: str, app: str) -> AppRead:
        return self._call(lambda: self.client.restart(tenant, app))

    def delete_app(self, tenant: str, app: str) -> None:
        self._call(lambda: self.client.delete_app(tenant, app))

    def _call(self, call: Callable[[], T]) -> T:
        """One call at a time on the shared client."""
        with self._lock:
            return self._unlocked(call)

    @staticmethod
    def _unlocked(call: Callable[[], T]) -> T:
        """A transport failure the client leaves raw (a timeout) is an `ApiError` here too, so the screens handle
        every failure of the API in one way."""
        try:
            return call()
        except httpx.HTTPError as exc:
            raise ApiError(0, "unavailable", f"the API did not answer ({exc.__class__.__name__})") from exc
