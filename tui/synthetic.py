"""`SyntheticData`: API-shaped data without a daemon, a stand-in for `ConsoleData` clearly named as one.

For what must not depend on a live platform — the console's benchmark and its snapshot tests — it serves a
fixed platform: N tenants of 10 apps each, one local node. `tick()` moves the traffic figures, as a refresh of
a live platform would.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from tenants.catalog import Template, templates
from tenants.enums import InstanceState, Isolation, TenantStatus
from tenants.schemas import (
    AppRead,
    EventRead,
    InstanceRead,
    NodeRead,
    TenantRead,
    TenantSummary,
    TrafficRead,
    VmStatsRead,
)
from tui.dao import TenantDetail, shares

APPS_PER_TENANT = 10
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class SyntheticData:
    is_operator = known_operator = True
    own_tenant = None

    def __init__(self, tenants: int) -> None:
        self.tenants = tenants
        self.ticks = 0

    def tick(self) -> None:
        self.ticks += 1

    def overview(self) -> list[TenantSummary]:
        return [
            TenantSummary(
                name=f"tenant-{i:04d}",
                plan="medium",
                isolation=Isolation.SHARED,
                status=TenantStatus.ACTIVE,
                apps=APPS_PER_TENANT,
                instances_ready=20,
                instances_desired=20,
                cpu_millicores=2500,
                max_cpu_millicores=8000,
                memory_mib=1280,
                max_memory_mib=8192,
                requests_per_second=(i * 7 + self.ticks) % 500 / 3,
                error_rate=((i + self.ticks) % 13) / 1000,
            )
            for i in range(self.tenants)
        ]

    def nodes(self) -> list[NodeRead]:
        return [
            NodeRead(
                name="local",
                driver="local",
                state="ready",
                cpu_millicores=64000,
                memory_mib=65536,
                instances=2 * APPS_PER_TENANT * self.tenants,  # every app of every tenant: 2 instances, as below
                allocated_cpu_millicores=2 * APPS_PER_TENANT * self.tenants * 250,
                allocated_memory_mib=2 * APPS_PER_TENANT * self.tenants * 128,
                tenants=[f"tenant-{i:04d}" for i in range(self.tenants)],
            ),
            NodeRead(
                name="vm-1",
                driver="qemu",
                state="ready",
                cpu_millicores=1000,
                memory_mib=976,
                instances=2,
                allocated_cpu_millicores=500,
                allocated_memory_mib=128,
                tenants=["tenant-0000"],
                flavor="small",
                accel="tcg (kvm unusable: pvm)",
                vm=VmStatsRead(cpu_seconds=42.0, memory_bytes=640 * 1024**2, disk_bytes=96 * 1024**2),
            ),
        ]

    def tenant(self, name: str) -> TenantDetail:
        summary = next(t for t in self.overview() if t.name == name)
        apps = [
            AppRead(
                tenant=name,
                name=f"app-{a}",
                image="strata/hello",
                replicas=2,
                revision=1,
                created_at=EPOCH,
                updated_at=EPOCH,
                health_path="/healthz",
                instances=[
                    InstanceRead(
                        id=f"{a:02d}{k:04x}",
                        node="local",
                        state=InstanceState.READY,
                        endpoint=f"127.0.0.1:{30000 + a * 2 + k}",
                        revision=1,
                        restarts=0,
                        started_at=None,
                        last_health="ok",
                        container_id="c" * 64,
                    )
                    for k in range(2)
                ],
            )
            for a in range(APPS_PER_TENANT)
        ]
        traffic = {
            app.name: TrafficRead(
                requests_per_second=summary.requests_per_second / APPS_PER_TENANT,
                p50_ms=2.5,
                p99_ms=10.0,
                error_rate=summary.error_rate,
                requests=100,
            )
            for app in apps
        }
        tenant = TenantRead.model_validate(
            {
                "name": name,
                "isolation": "shared",
                "status": "active",
                "created_at": EPOCH,
                "plan": {
                    "name": "medium",
                    "max_apps": 10,
                    "max_instances": 20,
                    "max_cpu_millicores": 8000,
                    "max_memory_mib": 8192,
                    "requests_per_second": 1000,
                    "burst": 2000,
                    "max_body_mib": 100,
                },
                "usage": {"apps": 10, "instances": 20, "cpu_millicores": 2500, "memory_mib": 1280},
            }
        )
        return TenantDetail(tenant, apps, shares(apps, self.nodes()), traffic)

    def events(self, tenant: str | None = None) -> list[EventRead]:
        return [
            EventRead(
                id=1,
                time=EPOCH,
                actor="operator/bootstrap",
                tenant="tenant-0000",
                action="tenant.create",
                detail={"plan": "medium"},
            )
        ]

    def catalog(self) -> list[Template]:
        return templates()

    async def logs(self, tenant: str, app: str) -> AsyncIterator[str]:
        """Each instance's first line, then nothing more (a live stream would wait here)."""
        for instance in next(a for a in self.tenant(tenant).apps if a.name == app).instances:
            yield f"[{instance.id}] listening on :8080"
