"""Data access for the console: everything it shows comes from the control API, through its token.

Calls are blocking (httpx) and made from worker threads; one lock keeps them one at a time on the shared
client. Whether the token is an operator's is learnt once, from the API's own answer.
"""

import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenants.catalog import Template
from tenants.client import ApiError, StrataClient
from tenants.enums import TenantStatus
from tenants.schemas import (
    AppRead,
    AppSpec,
    EventRead,
    NodeRead,
    TenantCreate,
    TenantRead,
    TenantSummary,
    TrafficRead,
)

T = TypeVar("T")
LOG_BACKLOG_SECONDS = 300


@dataclass(frozen=True)
class TenantDetail:
    """One tenant across the three layers: its nodes (IaaS), apps and instances (PaaS), traffic (SaaS)."""

    tenant: TenantRead
    apps: list[AppRead]
    nodes: list[NodeRead]  # those its instances run on (every node's figures need an operator token)
    traffic: dict[str, TrafficRead]


class ConsoleData:
    def __init__(self, client: StrataClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._operator: bool | None = None

    @property
    def is_operator(self) -> bool:
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
        traffic = {app.name: self._call(lambda a=app.name: self.client.traffic(name, a)) for app in apps}
        used = {instance.node for app in apps for instance in app.instances}
        nodes = (
            [node for node in self.nodes() if node.name in used]
            if self.is_operator
            else [
                NodeRead(
                    name=node,
                    driver="?",
                    state="?",
                    cpu_millicores=0,
                    memory_mib=0,
                    instances=0,
                    allocated_cpu_millicores=0,
                    allocated_memory_mib=0,
                )
                for node in sorted(used)
            ]
        )
        return TenantDetail(tenant, apps, nodes, traffic)

    def nodes(self) -> list[NodeRead]:
        return self._call(self.client.nodes)

    def events(self, tenant: str | None = None) -> list[EventRead]:
        return self._call(lambda: self.client.events(tenant, limit=200))

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

    def scale(self, tenant: str, app: str, replicas: int) -> AppRead:
        return self._call(lambda: self.client.scale(tenant, app, replicas))

    def restart(self, tenant: str, app: str) -> AppRead:
        return self._call(lambda: self.client.restart(tenant, app))

    def delete_app(self, tenant: str, app: str) -> None:
        self._call(lambda: self.client.delete_app(tenant, app))

    def _call(self, call: Callable[[], T]) -> T:
        with self._lock:
            return call()
