"""Volumes on nodes, on parts in memory: a migrated SQLite database, `FakeDriver` VMs with `FakeGuestDisks` guests,
`FakeRuntime` engines, and the host's volumes as plain directories (no loop mounts). Where a volume may live,
the rules and refusals of a move, what a move does on each side, and what the platform recovers after a crash.
Real QEMU guests mounting real disks: `tests/iaas/test_vm_volumes.py`."""

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from hosting.iaas.driver import Disk, GuestImage, Identity, VmSpec
from hosting.iaas.fake import FakeDriver
from hosting.iaas.flavors import flavor
from hosting.paas.backups import VolumeBackups
from hosting.paas.fake_guest import FakeGuestDisks, fake_guests
from hosting.paas.fake_runtime import FakeClock, FakeHealthChecker, FakePorts, FakeRuntime
from hosting.paas.liveness import Liveness
from hosting.paas.node_volumes import NodeVolumes, guest_path, serial
from hosting.paas.nodes import NodeHandle, NodePool
from hosting.paas.reconciler import Reconciler
from hosting.paas.runtime import Capacity
from hosting.paas.scheduler import Strategy
from hosting.paas.volumes import VolumeError, VolumeUsage
from tenants import apps, backups, db, instances, tenancy, volumes
from tenants.enums import BackupState, Isolation, NodeState
from tenants.errors import Conflict, Invalid
from tenants.models import Event, Instance, Node
from tenants.schemas import AppSpec, TenantCreate, VolumeMount

PLATFORM = "fakeplatform0001"
IMAGE = GuestImage("node-abc", Path("/images/vmlinuz"), Path("/images/initrd"), Path("/images/disk.qcow2"))
IDENTITY = Identity(hostname="vm", host_key="(a private key)", authorized_key="ssh-ed25519 AAAA platform")
KEEPER = AppSpec(image="strata/hello", memory_mib=64, volumes=[VolumeMount(volume="data", path="/data")])


class DirVolumes(NodeVolumes):
    """The host's side as plain directories: `on_host` says which the host holds, `busy` which a container of
    the host still holds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_host: set[tuple[str, str]] = set()
        self.busy: set[tuple[str, str]] = set()

    def create(self, tenant: str, name: str, size_mib: int) -> Path:
        self.path(tenant, name).mkdir(parents=True)
        self.image(tenant, name).write_bytes(b"\0" * 4096)
        self.on_host.add((tenant, name))
        return self.path(tenant, name)

    def host_mount(self, tenant: str, name: str) -> Path:
        self.on_host.add((tenant, name))
        return self.path(tenant, name)

    def held(self, tenant: str, name: str) -> bool:
        return (tenant, name) in self.on_host

    def unmount(self, tenant: str, name: str) -> None:
        if (tenant, name) in self.busy:
            raise VolumeError(f"volume {name} of tenant {tenant} is in use on the host")
        self.on_host.discard((tenant, name))

    def host_usage(self, tenant: str, name: str) -> VolumeUsage:
        return VolumeUsage(size_bytes=64 << 20, used_bytes=1 << 20)

    def host_remove(self, tenant: str, name: str) -> None:
        self.on_host.discard((tenant, name))
        self.image(tenant, name).unlink(missing_ok=True)


@dataclass
class World:
    engine: Engine
    root: Path
    driver: FakeDriver = field(default_factory=FakeDriver)
    clock: FakeClock = field(default_factory=FakeClock)
    ports: FakePorts = field(default_factory=FakePorts)
    runtimes: dict[str, FakeRuntime] = field(default_factory=dict)
    guests: dict[str, FakeGuestDisks] = field(default_factory=dict)
    store: DirVolumes = field(init=False)
    pool: NodePool = field(init=False)

    def __post_init__(self) -> None:
        self.guests, guest = fake_guests(self.driver, self.root.parent / "disks")
        self.pool = NodePool()
        self.store = DirVolumes(
            self.root, self.engine, self.pool, PLATFORM, drivers={"fake": self.driver}, guests=guest
        )

    def node(self, name: str, tenant: str | None = None) -> None:
        """A ready node: the host's (`local`), or a running VM node of the fake driver."""
        driver = "local" if name == "local" else "fake"
        runtime = FakeRuntime(name, capacity=Capacity(4000, 8192), clock=self.clock.now, ports=self.ports)
        runtime.add_image("strata/hello")
        self.runtimes[name] = runtime
        handle = NodeHandle(runtime, driver, "fake://", capacity=Capacity(4000, 8192), reachable=True, tenant=tenant)
        self.pool.attach(handle)
        if driver == "fake":
            run(lambda: self._vm(name))
        with db.session(self.engine) as session:
            session.add(Node(name=name, driver=driver, docker_url="fake://", state=NodeState.READY, tenant=tenant))
            session.commit()

    async def _vm(self, name: str) -> None:
        await self.driver.create(VmSpec(name, flavor("small"), IMAGE, 2200), IDENTITY)
        await self.driver.start(name)

    def tenant(self, name: str = "acme", isolation: Isolation = Isolation.SHARED) -> None:
        with db.session(self.engine) as session:
            tenancy.create_tenant(session, "op", TenantCreate(name=name, plan="large", isolation=isolation))

    def volume(self, node: str | None = None, tenant: str = "acme", name: str = "data") -> str:
        """A volume as the API makes it: placed, made on the host, put on its node, recorded."""
        with db.session(self.engine) as session:
            owner = volumes.check_create(session, tenant, name, 64)
            where = volumes.placement(session, owner, node)
        self.store.create(tenant, name, 64)
        if where != "local":
            run(lambda: self.store.create_on(tenant, name, where))
        with db.session(self.engine) as session:
            volumes.record_create(session, "op", tenancy.get_tenant(session, tenant), name, 64, where)
        return where

    def row(self, name: str = "data", tenant: str = "acme") -> Any:
        with db.session(self.engine) as session:
            return volumes.find(session, tenant, name)

    def move(self, target: str, name: str = "data", tenant: str = "acme") -> Any:
        return run(lambda: self.store.move("op", tenant, name, target))

    def events(self, action: str) -> list[Event]:
        with db.session(self.engine) as session:
            return list(session.exec(select(Event).where(Event.action == action).order_by(Event.id)))


def run(scenario: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(scenario())


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> Iterator[World]:
    world = World(engine, tmp_path / "volumes")
    world.tenant()
    for name in ("local", "vm1"):
        world.node(name)
    yield world


IMAGE_OF = "volumes/acme/data.ext4"


def test_a_volume_moves_from_the_host_to_a_vm_as_a_disk_and_back(world: World, tmp_path: Path) -> None:
    assert world.volume() == "local" and ("acme", "data") in world.store.on_host
    image = tmp_path / IMAGE_OF

    world.move("vm1")
    assert (world.row().node, world.row().moving_to) == ("vm1", None)
    assert ("acme", "data") not in world.store.on_host  # never mounted by two kernels
    assert world.driver.disks("vm1") == [Disk(serial("acme", "data"), image)]
    assert world.guests["vm1"].mounts == {guest_path("acme", "data"): serial("acme", "data")}
    assert run(lambda: world.store.usage_on("acme", "data", "vm1")) == VolumeUsage(64 << 20, 4096)  # the guest's df

    world.move("local")
    assert world.row().node == "local" and ("acme", "data") in world.store.on_host
    assert world.driver.disks("vm1") == [] and world.guests["vm1"].mounts == {}
    assert world.guests["vm1"].calls[-1] == f"unmount {guest_path('acme', 'data')}"  # unmounted before detached
    moves = [(e.detail["source"], e.detail["target"]) for e in world.events("volume.move")]
    assert moves == [("local", "vm1"), ("vm1", "local")]
    assert world.move("local") is None  # there already: nothing to do


def test_a_move_is_refused_with_what_to_do(world: World) -> None:
    world.tenant("solo", Isolation.DEDICATED)
    world.tenant("other", Isolation.DEDICATED)
    world.node("vm2", tenant="solo")
    world.node("vm3", tenant="other")
    world.volume()
    with pytest.raises(Invalid, match="no node named 'nowhere'; see `strata nodes list`"):
        world.move("nowhere")
    with pytest.raises(Invalid, match="node 'vm2' is dedicated to another tenant"):
        world.move("vm2")
    assert world.volume(tenant="solo") == "vm2"  # a dedicated tenant's volume lives on its own VM by default
    with pytest.raises(Invalid, match="its volumes cannot live on the host"):
        world.move("local", tenant="solo")
    with pytest.raises(Invalid, match="cannot live on node 'vm3', which is not one of its own VM nodes"):
        world.move("vm3", tenant="solo")
    with db.session(world.engine) as session:
        running = backups.start(session, "op", "acme", "data")
    with pytest.raises(Conflict, match="a backup of volume 'data' is running; move it once the backup is over"):
        world.move("vm1")
    with db.session(world.engine) as session:
        backups.finish(session, running.id or 0, failure="broken")
        backups.set_restoring(session, "acme", "data", True)
    with pytest.raises(Conflict, match="is being restored; move it once the restore is over"):
        world.move("vm1")
    assert (world.row().node, world.row().moving_to) == ("local", None)  # nothing was touched
    assert world.driver.disks("vm1") == []


def test_a_dedicated_tenant_without_a_ready_vm_of_its_own_is_told_to_add_one(world: World) -> None:
    world.tenant("solo", Isolation.DEDICATED)
    with pytest.raises(Conflict, match=r"none is ready; add one \(strata nodes add NAME --tenant solo\)"):
        world.volume(tenant="solo")
    with pytest.raises(Invalid, match="cannot live on the host"):
        world.volume(tenant="solo", node="local")


def test_while_a_volume_moves_its_app_runs_nothing_and_nothing_else_touches_it(world: World) -> None:
    world.volume()
    with db.session(world.engine) as session:
        apps.deploy(session, "op", "acme", "web", KEEPER, platform_domain="localhost")
        app_id = apps.get_app(session, tenancy.get_tenant(session, "acme"), "web").id or 0
        session.add(Instance(id="i1", app_id=app_id, node="local", container_id="c1", revision=1, state="ready"))
        session.commit()

    async def scenario() -> None:
        moving = asyncio.create_task(world.store.move("op", "acme", "data", "vm1"))
        while world.row().moving_to is None:
            await asyncio.sleep(0.01)
        with db.session(world.engine) as session:
            [web] = [a for a in instances.desired_apps(session) if a.name == "web"]
            assert web.replicas == 0  # its instance goes
            with pytest.raises(Conflict, match="is moving to node vm1; back it up once it is there"):
                backups.start(session, "op", "acme", "data")
            with pytest.raises(Conflict, match="is moving to node vm1; delete it once the move is over"):
                volumes.delete(session, "op", "acme", "data", force=True)
        with pytest.raises(VolumeError, match="is moving to node vm1"):
            async with world.store.mounted("acme", ["data"], "local"):
                pass
        with pytest.raises(VolumeError, match="is moving to node vm1"):
            await asyncio.to_thread(world.store.ensure_mounted, "acme", "data")  # as a backup would
        await asyncio.sleep(0.3)
        assert not moving.done() and ("acme", "data") in world.store.on_host  # the instance still holds it
        with db.session(world.engine) as session:  # the reconciler removed it
            instances.record(session, [], ["i1"], [])
        await moving

    run(scenario)
    with db.session(world.engine) as session:
        [web] = [a for a in instances.desired_apps(session) if a.name == "web"]
    assert (web.replicas, web.volume_node) == (1, "vm1")


def test_a_move_whose_source_still_holds_the_volume_fails_and_leaves_it_where_it_was(world: World) -> None:
    world.volume("vm1")
    world.guests["vm1"].busy.add(guest_path("acme", "data"))  # a container of the guest still mounts it
    with pytest.raises(Conflict, match="was not moved to node local: .*still mounted by a container; it stays on"):
        world.move("local")
    assert (world.row().node, world.row().moving_to) == ("vm1", None)
    assert [d.serial for d in world.driver.disks("vm1")] == [serial("acme", "data")]
    assert ("acme", "data") not in world.store.on_host
    [failed] = world.events("volume.move")
    assert failed.detail["state"] == "failed"


def test_a_volume_on_a_vm_is_never_mounted_on_the_host_behind_its_back(world: World) -> None:
    world.volume("vm1")
    with pytest.raises(VolumeError, match="lives on VM node vm1 .*not on the host"):
        world.store.ensure_mounted("acme", "data")  # what backups and restores of the host's volumes call


def test_a_volume_pinned_for_a_backup_is_mounted_in_its_guest_and_a_move_waits_until_it_is_let_go(world: World) -> None:
    world.volume("vm1")
    guest, path = world.guests["vm1"], guest_path("acme", "data")
    guest.mounted.clear()  # as a reboot of the guest leaves it

    async def scenario() -> None:
        async with world.store.pinned("acme", "data") as pinned:
            assert pinned is guest and guest.mounts == {path: serial("acme", "data")}
            moving = asyncio.create_task(world.store.move("op", "acme", "data", "local"))
            await asyncio.sleep(0.3)
            assert not moving.done() and world.row().moving_to == "local"  # marked, but it waits for the pin
            assert guest.mounts == {path: serial("acme", "data")} and world.driver.disks("vm1") != []
            # an instance start is refused at once, not held up (with the reconciler's pass) for the copy
            with pytest.raises(VolumeError, match="being backed up or restored: its app starts once it is over"):
                async with world.store.mounted("acme", ["data"], "vm1"):
                    pass
        await moving
        with pytest.raises(VolumeError, match="volume nope of tenant acme does not exist"):
            async with world.store.pinned("acme", "nope"):
                pass
        async with world.store.pinned("acme", "data") as pinned:
            assert pinned is None  # on the host now: read there

    run(scenario)
    assert world.row().node == "local" and guest.mounts == {}


def test_a_moving_volume_is_not_pinned_and_a_backup_of_one_whose_guest_does_not_answer_fails_saying_so(
    world: World, tmp_path: Path
) -> None:
    world.volume("vm1")
    with db.session(world.engine) as session:
        volumes.get_volume(session, tenancy.get_tenant(session, "acme"), "data").moving_to = "local"
        session.commit()

    async def pin() -> None:
        async with world.store.pinned("acme", "data"):
            pass

    with pytest.raises(VolumeError, match="is moving to node local"):  # a move marked after the backup began
        run(pin)
    with db.session(world.engine) as session:
        volumes.abort_move(session, "op", "acme", "data", "test")
    world.guests["vm1"].answering = False
    store = VolumeBackups(world.engine, world.pool, world.store, tmp_path / "backups")
    done = run(lambda: store.create("op", "acme", "data"))
    assert done.state == BackupState.FAILED
    assert done.message == "the guest of node vm1 does not answer: connection lost"
    assert not list((tmp_path / "backups").rglob("*.tar"))


def test_a_daemon_stopped_mid_move_leaves_the_volume_where_its_row_says_and_mounts_it_there_on_demand(
    world: World, tmp_path: Path
) -> None:
    """Cut off after the disk went to vm1, before the row said so: the flag is cleared at start, and the next
    instance's mount takes the disk back from vm1 (unmounted in its guest first) to mount it on the host."""
    world.volume()
    world.store.unmount("acme", "data")
    run(lambda: world.store.create_on("acme", "data", "vm1"))  # attached and mounted in vm1's guest
    with db.session(world.engine) as session:
        row = volumes.get_volume(session, tenancy.get_tenant(session, "acme"), "data")
        row.moving_to = "vm1"
        session.commit()
        assert volumes.recover_moves(session) == ["acme/data"]
    assert world.row().moving_to is None

    async def instance_starts() -> list[str]:
        async with world.store.mounted("acme", ["data"], "local") as paths:
            return paths

    assert run(instance_starts) == [str(tmp_path / "volumes" / "acme" / "data")]
    assert world.driver.disks("vm1") == [] and world.guests["vm1"].mounts == {}
    assert ("acme", "data") in world.store.on_host


def test_an_instance_on_a_vm_binds_its_volume_where_the_guest_mounted_it_again_after_a_reboot(world: World) -> None:
    world.volume("vm1")
    with db.session(world.engine) as session:
        apps.deploy(session, "op", "acme", "web", KEEPER, platform_domain="localhost")
    reconciler = Reconciler(
        world.engine, PLATFORM, world.pool, Strategy.SPREAD, liveness=Liveness(FakeHealthChecker(world.ports)),
        clock=world.clock.monotonic, volumes=world.store.mounted,
    )  # fmt: skip
    run(reconciler.reconcile)
    [container] = world.runtimes["vm1"].containers_of("acme", "web")
    assert [(m.source, m.target) for m in container.spec.mounts] == [(guest_path("acme", "data"), "/data")]
    assert world.runtimes["local"].containers_of("acme") == []

    world.driver.die("vm1")  # the VM restarts: its disks come back with it, its guest's mounts do not
    run(lambda: world.driver.start("vm1"))
    assert world.guests["vm1"].mounts == {}

    async def restarts() -> None:
        async with world.store.mounted("acme", ["data"], "vm1"):
            pass

    run(restarts)
    assert world.guests["vm1"].mounts == {guest_path("acme", "data"): serial("acme", "data")}


def test_a_vm_node_that_holds_volumes_is_removed_only_by_force_and_drains_naming_them(world: World) -> None:
    world.volume("vm1")
    with db.session(world.engine) as session:
        apps.deploy(session, "op", "acme", "web", KEEPER, platform_domain="localhost")
        from tenants import nodes as registry

        with pytest.raises(Conflict, match=r"holds volume\(s\) acme/data \(web\); move them first"):
            registry.request_removal(session, "op", "vm1", force=False)
        drained = next(n for n in registry.list_nodes(session) if n.name == "vm1")
    assert drained.volumes == ["acme/data (web)"]
