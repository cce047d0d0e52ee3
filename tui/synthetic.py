"""`SyntheticData`: API-shaped data without a daemon, a stand-in for `ConsoleData` clearly named as one.

For what must not depend on a live platform — the console's benchmark and its snapshot tests — it serves a
fixed platform: N tenants of 10 apps each, one local node; in each tenant, app-3 pulls its new image while its
first revision serves, three builds: one running, one failed (with its log), one deployed, and three volumes:
one mounted by app-0 (which runs one instance, as an app with a volume does), one mounted by none, and the
volume of the managed PostgreSQL `db`, the tenant's tenth app (one instance of 500m and 256Mi, as a service
runs), bound to app-1 and app-2. `tick()` moves the traffic figures, as a refresh of a live platform would.
Builds' times are relative to now, half-way between the minutes the console shows, so that they read the same
at each run.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from tenants.catalog import Template, templates
from tenants.client import ApiError
from tenants.enums import AppKind, BuildSource, BuildState, InstanceState, Isolation, TenantStatus
from tenants.schemas import (
    AppRead,
    BuildRead,
    DaemonRead,
    EventRead,
    InstanceRead,
    NodeRead,
    PullRead,
    ServiceRead,
    StatusRead,
    TenantRead,
    TenantSummary,
    TrafficRead,
    UsageLine,
    UsageReport,
    VmStatsRead,
    VolumeMount,
    VolumeRead,
)
from tui.dao import TenantDetail, shares

APPS_PER_TENANT = 10
INSTANCES_PER_TENANT = 2 * APPS_PER_TENANT - 2  # two of each app, but one of app-0 (it mounts a volume) and of db
VOLUME_APP = 0  # app-0 mounts the volume `data`
SERVICE_APP = 9  # the tenth app is the managed PostgreSQL `db`, on its volume `db`
SERVICE = "db"
BOUND_APPS = ["app-1", "app-2"]  # bound to db
# what each tenant's instances claim: 250m and 128Mi each, but db's 500m and 256Mi
TENANT_CPU_MILLICORES = (INSTANCES_PER_TENANT - 1) * 250 + 500
TENANT_MEMORY_MIB = (INSTANCES_PER_TENANT - 1) * 128 + 256
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
PULLING_APP = 3  # app-3 pulls its revision 2's image
FAILED_BUILD = 2
FAILED_LOG = """\
Step 1/4 : FROM strata/static
 ---> 5b0c8e1f2a3d
Step 2/4 : COPY . /srv
 ---> 9e7d6c5b4a32
Step 3/4 : RUN make site
/bin/sh: make: not found
The command '/bin/sh -c make site' returned a non-zero code: 127
failed: the build failed: The command '/bin/sh -c make site' returned a non-zero code: 127
"""


class SyntheticData:
    is_operator = known_operator = True
    own_tenant = None

    def __init__(self, tenants: int) -> None:
        self.tenants = tenants
        self.ticks = 0

    def tick(self) -> None:
        self.ticks += 1

    def refusal(self, tenant: str, operation: object, what: str) -> None:
        """An operator's: nothing is refused."""

    def whoami(self) -> None:
        """An operator's: no member, no role."""

    def overview(self) -> list[TenantSummary]:
        return [
            TenantSummary(
                name=f"tenant-{i:04d}",
                plan="medium",
                isolation=Isolation.SHARED,
                status=TenantStatus.ACTIVE,
                apps=APPS_PER_TENANT,
                instances_ready=INSTANCES_PER_TENANT,
                instances_desired=INSTANCES_PER_TENANT,
                cpu_millicores=2500,
                max_cpu_millicores=8000,
                memory_mib=1280,
                max_memory_mib=8192,
                requests_per_second=(i * 7 + self.ticks) % 500 / 3,
                error_rate=((i + self.ticks) % 13) / 1000,
            )
            for i in range(self.tenants)
        ]

    def status(self) -> StatusRead:
        """Two daemons on PostgreSQL: `host-a` leads since the epoch, `host-b` stands by."""
        leader = DaemonRead(name="host-a", pid=4242, started_at=EPOCH, seen_at=EPOCH, leading_since=EPOCH, alive=True)
        standby = DaemonRead(name="host-b", pid=4343, started_at=EPOCH, seen_at=EPOCH, alive=True)
        return StatusRead(database="postgresql", answered_by="host-a", leader=leader, daemons=[leader, standby])

    def nodes(self) -> list[NodeRead]:
        return [
            NodeRead(
                name="local",
                driver="local",
                state="ready",
                cpu_millicores=64000,
                memory_mib=65536,
                instances=INSTANCES_PER_TENANT * self.tenants,  # every app of every tenant, as below
                allocated_cpu_millicores=TENANT_CPU_MILLICORES * self.tenants,
                allocated_memory_mib=TENANT_MEMORY_MIB * self.tenants,
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
                replicas=1 if a == VOLUME_APP else 2,
                revision=2 if a == PULLING_APP else 1,
                created_at=EPOCH,
                updated_at=EPOCH,
                health_path="/healthz",
                volumes=[VolumeMount(volume="data", path="/var/lib/app")] if a == VOLUME_APP else [],
                pull=PullRead(
                    reference="registry.example.com/team/app-3:1.4",
                    revision=2,
                    status="pulling",
                    done_bytes=12 * 2**20,
                    total_bytes=48 * 2**20,
                    detail="Downloading",
                )
                if a == PULLING_APP
                else None,
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
                    for k in range(1 if a == VOLUME_APP else 2)
                ],
            )
            for a in range(APPS_PER_TENANT)
            if a != SERVICE_APP
        ]
        apps.append(self._service_app(name))
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
                    "max_storage_mib": 10240,
                    "backup_every_hours": 24,
                    "backups_kept": 7,
                },
                "usage": {
                    "apps": 10,
                    "instances": INSTANCES_PER_TENANT,
                    "cpu_millicores": 2500,
                    "memory_mib": 1280,
                    "storage_mib": 3328,  # data, scratch and db
                },
            }
        )
        volumes = [
            VolumeRead(
                tenant=name,
                name="data",
                size_mib=1024,
                node="local",
                created_at=EPOCH,
                used_mib=870.4,
                mounted_by=[f"app-{VOLUME_APP}"],
            ),
            VolumeRead(tenant=name, name="scratch", size_mib=2048, node="vm-1", created_at=EPOCH),  # a disk of the VM
            VolumeRead(
                tenant=name, name=SERVICE, size_mib=256, node="local", created_at=EPOCH, used_mib=41.3,
                mounted_by=[SERVICE],
            ),
        ]  # fmt: skip
        return TenantDetail(
            tenant, apps, shares(apps, self.nodes(), volumes), traffic, self.builds(name), volumes, self.services(name)
        )

    def _service_app(self, tenant: str) -> AppRead:
        """The app that runs the service `db`: as the platform makes it (kind postgres, on its own volume)."""
        return AppRead(
            tenant=tenant, name=SERVICE, image="strata/postgres:15", port=5432, replicas=1, revision=1,
            cpu_millicores=500, memory_mib=256, created_at=EPOCH, updated_at=EPOCH,
            volumes=[VolumeMount(volume=SERVICE, path="/var/lib/postgresql/data")],
            instances=[
                InstanceRead(
                    id=f"{SERVICE_APP:02d}0000", node="local", state=InstanceState.READY,
                    endpoint=f"127.0.0.1:{30000 + SERVICE_APP * 2}", revision=1, restarts=0, started_at=None,
                    last_health="ok", container_id="d" * 64,
                )
            ],
        )  # fmt: skip

    def services(self, tenant: str) -> list[ServiceRead]:
        return [
            ServiceRead(
                tenant=tenant, name=SERVICE, kind=AppKind.POSTGRES, host=SERVICE, port=5432, database="app",
                username="app", size_mib=256, used_mib=41.3, ready=True, status=None, bound_to=BOUND_APPS,
                created_at=EPOCH,
            )
        ]  # fmt: skip

    def builds(self, tenant: str, app: str | None = None, limit: int = 100) -> list[BuildRead]:
        now = datetime.now(UTC)
        every = [
            BuildRead(
                id=3,
                tenant=tenant,
                app="app-2",
                state=BuildState.BUILDING,
                source=BuildSource.GIT,
                actor=f"{tenant}/laptop",
                commit="4e1d2c9b" * 5,
                image=None,
                revision=None,
                message=None,
                started_at=now - timedelta(minutes=1, seconds=30),
                finished_at=None,
            ),
            BuildRead(
                id=FAILED_BUILD,
                tenant=tenant,
                app="app-1",
                state=BuildState.FAILED,
                source=BuildSource.UPLOAD,
                actor=f"{tenant}/ci",
                commit=None,
                image=None,
                revision=None,
                message="the build failed: The command '/bin/sh -c make site' returned a non-zero code: 127",
                started_at=now - timedelta(minutes=12, seconds=30),
                finished_at=now - timedelta(minutes=11, seconds=42),
            ),
            BuildRead(
                id=1,
                tenant=tenant,
                app="app-1",
                state=BuildState.SUCCEEDED,
                source=BuildSource.GIT,
                actor=f"{tenant}/laptop",
                commit="a3f09e71" * 5,
                image=f"strata-build/{tenant}/app-1:1",
                revision=1,
                message=None,
                started_at=now - timedelta(hours=2, minutes=30),
                finished_at=now - timedelta(hours=2, minutes=28, seconds=55),
            ),
        ]
        return [build for build in every if app in (None, build.app)][:limit]

    def build_log(self, tenant: str, build_id: int) -> str:
        """The failed build's whole log; the others' few lines."""
        logs = {
            1: "Step 1/2 : FROM strata/static\nStep 2/2 : COPY . /srv\nsucceeded: revision 1\n",
            FAILED_BUILD: FAILED_LOG,
            3: "Step 1/3 : FROM strata/static\n",
        }
        if build_id not in logs:
            raise ApiError(404, "not_found", f"build {build_id} not found")
        return logs[build_id]

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

    def usage(self) -> UsageReport:
        """This month so far (six days): each app's usage, growing with its index; app-0's volume, and the one no
        app mounts."""
        since, hours = datetime(2026, 12, 1, tzinfo=UTC), 6 * 24
        plan = self.tenant("tenant-0000").tenant.plan
        lines = [
            UsageLine(
                tenant=f"tenant-{i:04d}",
                app=f"app-{a}",
                node_kind=Isolation.SHARED,
                cpu_seconds=a * 900.0,
                memory_mib_hours=a * 64.0 * hours,
                storage_gib_hours=0.5 * hours if a == VOLUME_APP else 0.0,
                instance_hours=2.0 * hours,
                requests=a * 1000,
                bytes_in=a * 250_000,
                bytes_out=a * 4_000_000,
            )  # fmt: skip
            for i in range(self.tenants)
            for a in range(APPS_PER_TENANT)
        ]
        lines += [
            UsageLine(
                tenant=f"tenant-{i:04d}",
                app="",
                node_kind=Isolation.SHARED,
                cpu_seconds=0,
                memory_mib_hours=0,
                storage_gib_hours=0.25 * hours,
                instance_hours=0,
                requests=0,
                bytes_in=0,
                bytes_out=0,
            )  # fmt: skip
            for i in range(self.tenants)
        ]
        plans = {f"tenant-{i:04d}": plan for i in range(self.tenants)}
        return UsageReport(since=since, until=since + timedelta(hours=hours), lines=lines, plans=plans)

    async def logs(self, tenant: str, app: str) -> AsyncIterator[str]:
        """Each instance's first line, then nothing more (a live stream would wait here)."""
        for instance in next(a for a in self.tenant(tenant).apps if a.name == app).instances:
            yield f"[{instance.id}] listening on :8080"
