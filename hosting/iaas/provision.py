"""Booting VMs fast: per flavor, a template VM is booted cold once and saved as a snapshot; every VM after
it is a clone restored from that snapshot (as Firecracker's snapshots do), then made its own machine
(`guest_ssh.rebirth`). A cold boot is the fallback where the driver cannot snapshot.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from asyncssh import SSHClientConnection, SSHKey

from hosting.iaas.driver import GuestImage, HypervisorDriver, HypervisorError, VmSpec
from hosting.iaas.flavors import Flavor
from hosting.iaas.guest_ssh import connect, new_identity, rebirth
from hosting.iaas.net import free_port

log = logging.getLogger(__name__)

COLD_BOOT_TIMEOUT_SECONDS = 600  # TCG on a busy 2-core host: ~36 s alone, ~60 s three at once
RESTORE_TIMEOUT_SECONDS = 60

Ready = Callable[[SSHClientConnection], Awaitable[None]]  # returns once the guest is usable


@dataclass(frozen=True)
class Booted:
    connection: SSHClientConnection
    restored: bool  # from its template's snapshot, not a cold boot
    ssh_seconds: float  # from the start to a login as itself
    ready_seconds: float  # from the start to `ready` passing


class Provisioner:
    """Creates and boots VMs of `driver` from `image`; `templates` is a driver of its own for the template
    VMs (they never run as nodes). `ready` says when a booted guest is usable, e.g. its engine answers."""

    def __init__(
        self,
        driver: HypervisorDriver,
        templates: HypervisorDriver,
        image: GuestImage,
        client: SSHKey,
        ready: Ready,
        snapshots: Path,
    ) -> None:
        self.driver = driver
        self.templates = templates
        self.image = image
        self.client = client
        self.ready = ready
        self.snapshots = snapshots
        self._template_locks: dict[str, asyncio.Lock] = {}

    async def create(self, name: str, flavor: Flavor, *, restore: bool = True) -> None:
        """Define VM `name`: its disk an overlay of its flavor's template (made now if missing) when the
        driver can snapshot and `restore` is asked, of the guest image otherwise (or if no template can be
        made: the VM then boots cold)."""
        spec = VmSpec(name, flavor, self.image, free_port())
        if restore and self.driver.capabilities.snapshots:
            try:
                template = await self.template(flavor)
            except HypervisorError as exc:
                log.warning("no %s template (%s); %s boots cold", flavor.name, exc, name)
            else:
                image = replace(self.image, name=template, disk=self.templates.disk(template))
                spec = replace(spec, image=image, template=template)
        await self.driver.create(spec, new_identity(name, self.client))

    async def boot(self, name: str) -> Booted:
        """Start a defined VM and return an SSH connection to it once it is ready: restored from its
        template's snapshot if it is a template's clone, booted cold otherwise."""
        spec = self.driver.spec(name)
        identity = self.driver.identity(name)
        started = time.monotonic()
        if spec.template is not None:
            template = self.templates.identity(spec.template)
            await self.driver.start(name, restore=self._snapshot(spec.template))
            as_template = await connect(spec.ssh_port, template, self.client, RESTORE_TIMEOUT_SECONDS)
            async with as_template:
                await rebirth(as_template, identity)
            connection = await connect(spec.ssh_port, identity, self.client, RESTORE_TIMEOUT_SECONDS)
        else:
            await self.driver.start(name)
            connection = await connect(spec.ssh_port, identity, self.client, COLD_BOOT_TIMEOUT_SECONDS)
        ssh_ready = time.monotonic() - started
        try:
            await self.ready(connection)
        except BaseException:
            connection.close()
            raise
        return Booted(connection, spec.template is not None, ssh_ready, time.monotonic() - started)

    async def template(self, flavor: Flavor) -> str:
        """The name of `flavor`'s template VM, booted cold and saved as a snapshot now if it was not (a failed
        attempt leaves nothing behind)."""
        name = f"{flavor.name}-{self.image.name}"
        async with self._template_locks.setdefault(name, asyncio.Lock()):
            snapshot = self._snapshot(name)
            if snapshot.exists():
                return name
            await self.templates.destroy(name)  # what a failed attempt left
            started = time.monotonic()
            log.info("making the %s template (a cold boot, once)", flavor.name)
            try:
                await self.templates.create(
                    VmSpec(name, flavor, self.image, free_port()), new_identity(name, self.client)
                )
                await self.templates.start(name)
                spec = self.templates.spec(name)
                async with await connect(
                    spec.ssh_port, self.templates.identity(name), self.client, COLD_BOOT_TIMEOUT_SECONDS
                ) as connection:
                    await self.ready(connection)
                self.snapshots.mkdir(parents=True, exist_ok=True)
                await self.templates.snapshot(name, snapshot)
            except BaseException:
                await self.templates.destroy(name)
                raise
            log.info("the %s template is ready (%.1f s)", flavor.name, time.monotonic() - started)
            return name

    def _snapshot(self, template: str) -> Path:
        return self.snapshots / f"{template}.snap"
