"""Volumes on nodes: where each volume's filesystem is mounted, and moving it from one node to another.

Every volume's image is a file of this host (`LocalVolumes`). On the host's node (`local`) it is loop-mounted
here; on a VM node it is a disk of the VM, attached by the hypervisor driver (the IaaS way, as OpenStack's
Cinder attaches a volume) and mounted in the guest, over the node's SSH connection, at
`/var/lib/strata/volumes/TENANT/NAME`: what the node's containers bind-mount. One filesystem is never mounted
by two kernels at once: before a volume is mounted anywhere it is released everywhere else (unmounted on the
host; unmounted in a guest, then detached from its VM), and what holds it still refuses that.

Mounting is on demand and level-triggered, as the reconciler is: before an instance is created or restarted, its
volumes are mounted on its node, wherever a crash or a reboot left them (a VM restored or booted again gets its
disks back from the driver, but not its guest's mounts). A move marks the volume (`Volume.moving_to`: no instance
of its app runs meanwhile), waits until no container holds it, releases it where it was, puts it on the target
and records it there; the app then starts there. No byte is copied: every node's disk is this host's, so the
image stays where it is and only its mount moves (a move across hosts would copy it).

A volume's operations are one at a time (a lock per volume, held by the reconciler from the mount to the
container's creation, and by a backup or restore for its copy: `pinned`), so a move never releases a volume an
instance is being started on or that is being copied.
"""

import asyncio
import concurrent.futures
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlmodel import Session

from hosting.iaas.driver import Disk, HypervisorDriver, HypervisorError, VmState
from hosting.paas.guest_disks import GuestDisks, SshGuestDisks
from hosting.paas.nodes import NodePool
from hosting.paas.runtime import EngineError
from hosting.paas.vm_nodes import VmNodes
from hosting.paas.volumes import LocalVolumes, VolumeError, VolumeUsage
from tenants import db, volumes
from tenants.errors import Conflict
from tenants.instances import instances_of
from tenants.models import Node, Volume, saved_id
from tenants.tenancy import get_tenant
from tenants.volumes import HOST_NODE

log = logging.getLogger(__name__)
T = TypeVar("T")

GUEST_ROOT = "/var/lib/strata/volumes"  # where a VM node's guest mounts its volumes
STOP_SECONDS = 120.0  # for the instances of a moving volume's app to go
POLL_SECONDS = 0.2
BLOCKING_SECONDS = 120.0  # what a caller in a thread waits for the loop's part (a guest's mount, a detach)
CONNECT_SECONDS = 30.0  # for the platform to reach a VM node's guest (it reconnects a restarted daemon's in ~5 s)

Guests = Callable[[str], GuestDisks | None]  # node -> its guest's mounts, while the platform is connected to it


def serial(tenant: str, name: str) -> str:
    """The serial the volume's disk shows a guest: 20 characters, the most every bus carries."""
    return "sv-" + hashlib.sha256(f"{tenant}/{name}".encode()).hexdigest()[:17]


def guest_path(tenant: str, name: str) -> str:
    return f"{GUEST_ROOT}/{tenant}/{name}"


class NodeVolumes(LocalVolumes):
    """The volumes of this platform, on whichever node each lives. As a `LocalVolumes` (what backups and the
    API's reads use, from threads) it answers for the host and refuses to mount on the host a volume that lives
    elsewhere; `mounted`, `pinned`, `move`, `create_on` and `usage_on` are the loop's. `drivers` are the VM nodes'
    hypervisor drivers by name (a node's `driver`), `guests` finds a node's guest; `use` sets both from the
    daemon's VM nodes."""

    def __init__(
        self,
        root: Path,
        engine: Engine,
        pool: NodePool,
        platform: str,
        *,
        drivers: Mapping[str, HypervisorDriver] | None = None,
        guests: Guests = lambda node: None,
        nudge: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(root)
        self.engine, self.pool, self.platform, self.nudge = engine, pool, platform, nudge
        self.drivers: Mapping[str, HypervisorDriver] = drivers or {}
        self.guests = guests
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._copying: set[tuple[str, str]] = set()  # (tenant, name) of the volumes a backup or restore pins
        self._loop: asyncio.AbstractEventLoop | None = None

    def use(self, vm_nodes: Iterable[VmNodes]) -> None:
        """Serve the volumes of these hypervisors' VM nodes."""
        served = list(vm_nodes)
        self.drivers = {each.driver.name: each.driver for each in served}

        def guest(node: str) -> GuestDisks | None:
            for each in served:
                if (connection := each.guest(node)) is not None:
                    return SshGuestDisks(node, connection)
            return None

        self.guests = guest

    async def start(self) -> None:
        """Answer the callers in threads from now on: their guests' part runs on this loop."""
        self._loop = asyncio.get_running_loop()

    # the host's, as the host's volume store (blocking: callers run these in a thread)

    def host_mount(self, tenant: str, name: str) -> Path:
        return super().ensure_mounted(tenant, name)

    def host_usage(self, tenant: str, name: str) -> VolumeUsage:
        return super().usage(tenant, name)

    def host_remove(self, tenant: str, name: str) -> None:
        super().remove(tenant, name)

    def ensure_mounted(self, tenant: str, name: str) -> Path:
        """The volume mounted on the host, if it lives there: `VolumeError` for one on a VM node, or moving, or
        still attached to a VM (backups and restores read it here, and it must not be mounted twice)."""
        row = self._blocking_row(tenant, name)
        if row is not None and row.moving_to is not None:
            raise VolumeError(f"volume {name} of tenant {tenant} is moving to node {row.moving_to}")
        if row is not None and row.node != HOST_NODE:
            raise VolumeError(
                f"volume {name} of tenant {tenant} lives on VM node {row.node} (a disk of its VM), not on the host"
            )
        holders = [vm for _, vm in self._holders(tenant, name)]
        if holders:
            raise VolumeError(f"volume {name} of tenant {tenant} is still attached to VM {holders[0]}")
        return self.host_mount(tenant, name)

    def usage(self, tenant: str, name: str) -> VolumeUsage:
        """What the volume holds, read where it is mounted: on the host, or in its VM node's guest."""
        row = self._blocking_row(tenant, name)
        if row is None or row.node == HOST_NODE:
            return self.host_usage(tenant, name)
        return self._blocking(self.usage_on(tenant, name, row.node))

    def remove(self, tenant: str, name: str) -> None:
        """Delete the volume's data, wherever it is mounted: taken off its VM first (unmounted there whatever
        holds it: its data is going)."""
        if self._holders(tenant, name):
            self._blocking(self._release(tenant, name, keep=HOST_NODE, force=True))
        self.host_remove(tenant, name)

    def put_on(self, tenant: str, name: str, node: str) -> None:
        """`create_on`, for a caller in a thread."""
        self._blocking(self.create_on(tenant, name, node))

    # the loop's

    async def create_on(self, tenant: str, name: str, node: str) -> None:
        """Put a new volume, made and mounted on the host by `create`, on `node`: for a VM node, unmounted here,
        attached to the VM and mounted in its guest."""
        async with self._lock(tenant, name):
            await self._place(tenant, name, node, wait=True)

    @asynccontextmanager
    async def mounted(self, tenant: str, names: Sequence[str], node: str) -> AsyncIterator[list[str]]:
        """The volumes mounted on `node` (mounted again if a crash or reboot left them not), their paths there;
        none of them moves until the block ends (the caller creates the container that binds them in it).
        `VolumeError` for a volume that is not `node`'s, is moving, or cannot be mounted there."""
        self._loop = asyncio.get_running_loop()
        async with AsyncExitStack() as held:
            for name in sorted(names):
                if (tenant, name) in self._copying:  # checked with no await before the lock: none is missed
                    raise VolumeError(f"volume {name} is being backed up or restored: its app starts once it is over")
                await held.enter_async_context(self._lock(tenant, name))
            paths = []
            for name in names:
                row = await asyncio.to_thread(self._blocking_row, tenant, name)
                if row is None:
                    raise VolumeError(f"volume {name} of tenant {tenant} does not exist")
                if row.moving_to is not None:
                    raise VolumeError(f"volume {name} is moving to node {row.moving_to}: its app starts there then")
                if row.node != node:
                    raise VolumeError(f"volume {name} lives on node {row.node}, not {node}")
                paths.append(await self._place(tenant, name, node))
            yield paths

    @asynccontextmanager
    async def pinned(self, tenant: str, name: str) -> AsyncIterator[GuestDisks | None]:
        """The volume kept where it lives for the block: nothing mounts, releases or moves it meanwhile (a move
        waits; a backup or restore holds it so). On a VM node it is mounted in its guest first (wherever a crash
        or reboot left it), and that guest is yielded, the volume at `guest_path` there; None for one on the
        host. `VolumeError` for a volume that is moving, or whose guest cannot mount it. Meanwhile `mounted`
        refuses the volume rather than wait: a reconciler's pass is not held up for the length of a copy."""
        self._loop = asyncio.get_running_loop()
        self._copying.add((tenant, name))
        try:
            async with self._lock(tenant, name):
                yield await self._pin(tenant, name)
        finally:
            self._copying.discard((tenant, name))

    async def _pin(self, tenant: str, name: str) -> GuestDisks | None:
        row = await asyncio.to_thread(self._blocking_row, tenant, name)
        if row is None:
            raise VolumeError(f"volume {name} of tenant {tenant} does not exist")
        if row.moving_to is not None:
            raise VolumeError(f"volume {name} is moving to node {row.moving_to}")
        if row.node == HOST_NODE:
            return None
        await self._place(tenant, name, row.node, wait=True)
        return await self._guest(row.node, 0.0)

    async def usage_on(self, tenant: str, name: str, node: str) -> VolumeUsage:
        if node == HOST_NODE:
            return await asyncio.to_thread(self.host_usage, tenant, name)
        guest = self.guests(node)
        if guest is None:
            raise VolumeError(f"node {node} is not connected")
        return await guest.usage(guest_path(tenant, name))

    async def move(self, actor: str, tenant: str, name: str, target: str) -> Volume | None:
        """Move the volume to node `target` with its app: the app's instance stops, the volume is released where
        it is and put on `target`, and the app starts there. None if it is there already. `Conflict` if it may
        not move now or the move failed (it then stays where it was, and its app runs there again)."""
        self._loop = asyncio.get_running_loop()
        moving = await self._db(lambda s: volumes.start_move(s, tenant, name, target))
        if moving is None:
            return None
        source, started, done = moving.node, time.monotonic(), None
        self.nudge()
        try:
            await self._until_unused(tenant, name)
            async with self._lock(tenant, name):
                await self._until_unused(tenant, name)  # none started meanwhile: the lock keeps any from now on
                try:
                    await self._place(tenant, name, target, wait=True)
                except VolumeError:
                    await self._put_back(tenant, name, source)
                    raise
                seconds = time.monotonic() - started
                done = await self._db(lambda s: volumes.finish_move(s, actor, tenant, name, seconds))
            log.info("volume %s/%s moved from %s to %s in %.1f s", tenant, name, source, target, seconds)
            return done
        except VolumeError as exc:
            reason = str(exc)
            raise Conflict(
                f"volume {name!r} was not moved to node {target}: {reason}; it stays on node {source}"
            ) from None
        finally:
            if done is None:
                why = "the move failed or was cut off"
                await asyncio.shield(self._db(lambda s: volumes.abort_move(s, actor, tenant, name, why)))
            self.nudge()

    # helpers

    async def _place(self, tenant: str, name: str, node: str, *, wait: bool = False) -> str:
        """Mount the volume on `node`, released everywhere else first; its path there. `wait`: for the platform
        to reach the node's guest, a little (an API call right after a restart of the daemon; the reconciler
        places nothing on a node it has no connection to, and never waits)."""
        await self._release(tenant, name, keep=node)
        if node == HOST_NODE:
            return str(await asyncio.to_thread(self.host_mount, tenant, name))
        driver = await self._driver_of(node)
        disk = Disk(serial(tenant, name), self.image(tenant, name))
        try:
            await driver.attach_disk(node, disk)
        except HypervisorError as exc:
            raise VolumeError(str(exc)) from None
        guest = await self._guest(node, CONNECT_SECONDS if wait else 0.0)
        await guest.mount(disk.serial, guest_path(tenant, name))
        return guest_path(tenant, name)

    async def _guest(self, node: str, wait: float) -> GuestDisks:
        """The guest of VM node `node`, waiting up to `wait` seconds for the platform to (re)connect to it."""
        deadline = time.monotonic() + wait
        while (guest := self.guests(node)) is None:
            if time.monotonic() > deadline:
                raise VolumeError(f"node {node} is not connected: its volumes are mounted there once it is")
            await asyncio.sleep(POLL_SECONDS)
        return guest

    async def _release(self, tenant: str, name: str, *, keep: str, force: bool = False) -> None:
        """Unmount and detach the volume from every VM but `keep`, and from the host unless it is `keep`.
        `force`: whatever holds it (its data is going)."""
        for driver, vm in self._holders(tenant, name):
            if vm == keep:
                continue
            try:
                running = (await driver.info(vm)).state != VmState.DEFINED
                if running:
                    guest = self.guests(vm)
                    if guest is not None:
                        await guest.unmount(guest_path(tenant, name), force=force)
                    elif not force:
                        raise VolumeError(f"volume {name} is still attached to VM {vm}, whose guest does not answer")
                await driver.detach_disk(vm, serial(tenant, name))
            except HypervisorError as exc:
                raise VolumeError(str(exc)) from None
            log.info("volume %s/%s detached from VM %s", tenant, name, vm)
        if keep != HOST_NODE and await asyncio.to_thread(self.held, tenant, name):
            await asyncio.to_thread(self.unmount, tenant, name)

    async def _put_back(self, tenant: str, name: str, source: str) -> None:
        """After a failed move: the volume back where it was, if it can be (else it is mounted there when its
        app starts again)."""
        try:
            await self._place(tenant, name, source)
        except VolumeError as exc:
            log.warning("volume %s/%s is not back on %s after a failed move (it is when its app starts): %s",
                        tenant, name, source, exc)  # fmt: skip

    def _holders(self, tenant: str, name: str) -> list[tuple[HypervisorDriver, str]]:
        """The VMs the volume's image is attached to, as their drivers record it (blocking, but only small
        files are read)."""
        image = self.image(tenant, name)
        return [
            (driver, vm)
            for driver in self.drivers.values()
            for vm in driver.names()
            if any(disk.path == image for disk in driver.disks(vm))
        ]

    async def _driver_of(self, node: str) -> HypervisorDriver:
        row = await self._db(lambda s: s.get(Node, node))
        driver = self.drivers.get(row.driver) if row is not None else None
        if driver is None or node not in driver.names():
            raise VolumeError(f"node {node} is not a VM node of this platform")
        if not driver.capabilities.disks:
            raise VolumeError(f"node {node}'s hypervisor driver ({driver.name}) cannot attach disks")
        return driver

    async def _until_unused(self, tenant: str, name: str) -> None:
        """Wait until no instance of an app that mounts the volume is left, nor any running container of the
        tenant that mounts it (an older revision of an app that mounted it before)."""
        deadline = time.monotonic() + STOP_SECONDS
        while await self._db(lambda s: _instances(s, tenant, name)) or await self.containers_of(tenant, name):
            if time.monotonic() > deadline:
                raise VolumeError(f"its app's instances did not stop within {STOP_SECONDS:.0f} s")
            await asyncio.sleep(POLL_SECONDS)

    async def containers_of(self, tenant: str, name: str) -> list[str]:
        """The running containers of the tenant that mount the volume (an older revision's too), on every node
        the platform reaches (an unreachable one's instances' rows say what it runs)."""
        found = []
        for node in self.pool:
            if not node.reachable:
                continue
            try:
                containers = await node.runtime.containers(self.platform)
            except EngineError:
                continue
            found += [c.id for c in containers if c.running and c.tenant == tenant and name in c.volumes]
        return found

    def _lock(self, tenant: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((tenant, name), asyncio.Lock())

    def _blocking_row(self, tenant: str, name: str) -> Volume | None:
        with db.session(self.engine) as session:
            return volumes.find(session, tenant, name)

    def _blocking(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the platform's loop for a caller in a thread, and wait for it."""
        loop = self._loop
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if loop is None or loop.is_closed() or on_loop:
            work.close()
            raise VolumeError("the platform's loop cannot serve this now (volumes on VM nodes are the loop's)")
        try:
            return asyncio.run_coroutine_threadsafe(work, loop).result(BLOCKING_SECONDS)
        except concurrent.futures.TimeoutError:
            raise VolumeError(f"no answer within {BLOCKING_SECONDS:.0f} s") from None

    async def _db(self, work: Callable[[Session], T]) -> T:
        def run() -> T:
            with db.session(self.engine) as session:
                return work(session)

        return await asyncio.to_thread(run)


def _instances(session: Session, tenant: str, name: str) -> list[str]:
    """The instances of the apps that mount the volume."""
    users = volumes.mounted_by(session, get_tenant(session, tenant), name)
    return [row.id for rows in instances_of(session, [saved_id(app) for app in users]).values() for row in rows]
