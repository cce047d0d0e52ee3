"""The `libvirt` hypervisor driver: the same QEMU guests as the `qemu` driver, defined in and run by libvirt.

It talks to a libvirtd of this host by URI: `qemu:///system`, or `qemu:///system?socket=PATH` for another
one's socket. A VM's files stay in `vm_dir`'s directory, so the URI must be of this host, and libvirt's QEMU
must be able to read them (the tests' libvirtd runs QEMU as root, as the qemu driver does). Forwards go
through QEMU's human monitor as libvirt passes it on (`qemuMonitorCommand`); the user network is QEMU's own
(`restrict=on`, which libvirt's `<interface type='user'>` cannot say), given on QEMU's command line through
libvirt's QEMU namespace.

No snapshots: libvirt restores a saved VM only under its own name, so every VM boots cold.

Attached disks are libvirt's own: attached to the running domain and to its definition at once (`LIVE|CONFIG`),
so the next start has them; each a SCSI disk on the domain's virtio-scsi controller, as the qemu driver's.
"""

import asyncio
import shutil
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import libvirt
import libvirt_qemu

from hosting.iaas.accel import Accel
from hosting.iaas.driver import Capabilities, Disk, HypervisorError, VmInfo, VmSpec, VmState, VmStats
from hosting.iaas.guest_image import KERNEL_ARGS
from hosting.iaas.vm_dir import NETDEV, VmDirectoryDriver, identity_entries, netdev

QEMU_NAMESPACE = "http://libvirt.org/schemas/domain/qemu/1.0"
NETWORK_SLOT = "0x10"  # a slot of the root bus libvirt leaves alone (it fills slots from 0x1 up)
TB_CACHE_MIB = 256  # TCG's translation cache, as the qemu driver's `tb-size`

ET.register_namespace("qemu", QEMU_NAMESPACE)
libvirt.registerErrorHandler(lambda _context, _error: None, None)  # errors are raised, not also printed

T = TypeVar("T")


class LibvirtDriver(VmDirectoryDriver):
    name = "libvirt"
    capabilities = Capabilities(snapshots=False, disks=True)

    def __init__(self, vms_dir: Path, accel: Accel, uri: str) -> None:
        self.vms_dir = vms_dir
        self.accel = accel
        self.uri = uri
        self._connection: libvirt.virConnect | None = None
        self._connecting = threading.Lock()
        self._disk_locks: dict[str, asyncio.Lock] = {}  # one change of a domain's disks at a time

    async def _define(self, spec: VmSpec, directory: Path) -> None:
        xml = domain_xml(spec, directory, self.accel)
        await self._call(spec.name, lambda: self._connect().defineXML(xml))

    async def start(self, name: str, *, restore: Path | None = None) -> None:
        if restore is not None:
            raise HypervisorError(f"VM {name}: the libvirt driver cannot restore snapshots")
        (self._directory(name) / "console.log").unlink(missing_ok=True)
        domain = await self._domain(name)
        if await self._call(name, domain.isActive):
            raise HypervisorError(f"VM {name} is running already")
        await self._call(name, domain.create)

    async def stop(self, name: str, *, timeout: float) -> None:
        domain = await self._domain(name)
        if not await self._call(name, domain.isActive):
            return
        if timeout > 0:
            await self._call(name, domain.shutdown)  # ACPI power button
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not await self._call(name, domain.isActive):
                    return
                await asyncio.sleep(0.1)
        try:
            await self._call(name, domain.destroy)
        except HypervisorError:
            if await self._call(name, domain.isActive):
                raise  # not the race of a guest that powered off in between

    async def destroy(self, name: str) -> None:
        try:
            domain = await self._domain(name)
        except HypervisorError:
            domain = None  # never defined, or undefined already
        if domain is not None:
            await self.stop(name, timeout=0)
            await self._call(name, domain.undefine)
        directory = self.vms_dir / name
        if directory.is_dir():
            await asyncio.to_thread(shutil.rmtree, directory)

    async def info(self, name: str) -> VmInfo:
        spec = self.spec(name)
        domain = await self._domain(name)
        state, _reason = await self._call(name, domain.state)
        states = {libvirt.VIR_DOMAIN_RUNNING: VmState.RUNNING, libvirt.VIR_DOMAIN_PAUSED: VmState.PAUSED}
        return VmInfo(
            name=name, state=states.get(state, VmState.DEFINED), pid=None, accel=str(self.accel), ssh_port=spec.ssh_port
        )

    async def stats(self, name: str) -> VmStats:
        """vCPU time and resident memory as libvirt reads them for the QEMU process; disk from the overlay."""
        disk = await self._disk_bytes(name)
        domain = await self._domain(name)
        if not await self._call(name, domain.isActive):
            return VmStats(cpu_seconds=0.0, memory_bytes=0, disk_bytes=disk)
        (cpu,) = await self._call(name, lambda: domain.getCPUStats(True))
        memory = await self._call(name, domain.memoryStats)
        return VmStats(
            cpu_seconds=cpu.get("vcpu_time", cpu["cpu_time"]) / 1e9,
            memory_bytes=memory.get("rss", 0) * 1024,
            disk_bytes=disk,
        )

    async def _disk_bytes(self, name: str) -> int:
        return self.disk_bytes(name)

    async def snapshot(self, name: str, path: Path) -> None:
        raise HypervisorError(f"VM {name}: the libvirt driver cannot snapshot")

    async def attach_disk(self, name: str, disk: Disk) -> None:
        async with self._disk_locks.setdefault(name, asyncio.Lock()):
            new = self._attaching(name, disk)
            live, config = await self._disk_xml(name)
            flags = 0 if _find_disk(config, disk.serial) is not None else libvirt.VIR_DOMAIN_AFFECT_CONFIG
            if live is not None and _find_disk(live, disk.serial) is None:
                flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
            if flags:
                taken = {t.get("dev") for xml in (live, config) if xml is not None for t in xml.iter("target")}
                device = disk_xml(disk, next(dev for i in range(256) if (dev := _scsi_name(i)) not in taken))
                domain = await self._domain(name)
                await self._call(name, lambda: domain.attachDeviceFlags(device, flags))
            if new:
                self._record_disks(name, [*self.disks(name), disk])

    async def detach_disk(self, name: str, serial: str) -> None:
        async with self._disk_locks.setdefault(name, asyncio.Lock()):
            live, config = await self._disk_xml(name)
            found = [(xml, flag) for xml, flag in ((live, libvirt.VIR_DOMAIN_AFFECT_LIVE),
                     (config, libvirt.VIR_DOMAIN_AFFECT_CONFIG)) if xml is not None]  # fmt: skip
            elements = [(element, flag) for xml, flag in found if (element := _find_disk(xml, serial)) is not None]
            if elements:
                device = ET.tostring(elements[0][0], encoding="unicode")
                flags = sum(flag for _, flag in elements)
                domain = await self._domain(name)
                await self._call(name, lambda: domain.detachDeviceFlags(device, flags))
            self._record_disks(name, [disk for disk in self.disks(name) if disk.serial != serial])

    async def _disk_xml(self, name: str) -> tuple[ET.Element | None, ET.Element]:
        """The running domain's devices (None if it does not run) and its definition's."""
        domain = await self._domain(name)
        live = None
        if await self._call(name, domain.isActive):
            live = ET.fromstring(await self._call(name, lambda: domain.XMLDesc(0)))
        config = await self._call(name, lambda: domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        return live, ET.fromstring(config)

    async def _monitor(self, name: str, command: str) -> str:
        domain = await self._domain(name)
        hmp = libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP
        return await self._call(name, lambda: libvirt_qemu.qemuMonitorCommand(domain, command, hmp))

    async def _domain(self, name: str) -> libvirt.virDomain:
        return await self._call(name, lambda: self._connect().lookupByName(name))

    def _connect(self) -> libvirt.virConnect:
        """The connection to libvirt, opened again if it was lost (libvirtd restarted)."""
        with self._connecting:
            if self._connection is None or not self._connection.isAlive():
                self._connection = libvirt.open(self.uri)
            return self._connection

    async def _call(self, name: str, call: Callable[[], T]) -> T:
        """Run a (blocking) libvirt call in a thread; its errors as ours."""
        try:
            return await asyncio.to_thread(call)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"VM {name}: libvirt ({self.uri}): {exc.get_error_message()}") from None


def domain_xml(spec: VmSpec, directory: Path, accel: Accel) -> str:
    """libvirt's domain for `spec`: the machine of the qemu driver's command line (q35, virtio disk, net and
    rng, a VM generation id, identity by fw_cfg, the serial console to a file, no reboot)."""
    kvm = accel.name == "kvm"
    domain = ET.Element("domain", type="kvm" if kvm else "qemu")
    ET.SubElement(domain, "name").text = spec.name
    ET.SubElement(domain, "memory", unit="MiB").text = str(spec.flavor.memory_mib)
    ET.SubElement(domain, "vcpu").text = str(spec.flavor.vcpus)
    ET.SubElement(domain, "genid")
    boot = ET.SubElement(domain, "os")
    ET.SubElement(boot, "type", arch="x86_64", machine="q35").text = "hvm"
    ET.SubElement(boot, "kernel").text = str(spec.image.kernel)
    ET.SubElement(boot, "initrd").text = str(spec.image.initrd)
    ET.SubElement(boot, "cmdline").text = KERNEL_ARGS
    sysinfo = ET.SubElement(domain, "sysinfo", type="fwcfg")
    for entry, path in identity_entries(directory).items():
        ET.SubElement(sysinfo, "entry", name=entry, file=str(path))
    features = ET.SubElement(domain, "features")
    ET.SubElement(features, "acpi")
    if kvm:
        ET.SubElement(domain, "cpu", mode="host-passthrough")
    else:
        ET.SubElement(ET.SubElement(features, "tcg"), "tb-cache", unit="MiB").text = str(TB_CACHE_MIB)
        ET.SubElement(domain, "cpu", mode="maximum")
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        ET.SubElement(domain, event).text = "destroy"
    devices = ET.SubElement(domain, "devices")
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="qcow2", discard="unmap")
    ET.SubElement(disk, "source", file=str(directory / "disk.qcow2"))
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=str(directory / "console.log"))
    rng = ET.SubElement(devices, "rng", model="virtio")
    ET.SubElement(rng, "backend", model="random").text = "/dev/urandom"
    ET.SubElement(devices, "controller", type="scsi", index="0", model="virtio-scsi")  # attached disks' bus
    ET.SubElement(devices, "memballoon", model="none")
    ET.SubElement(devices, "controller", type="usb", model="none")
    commandline = ET.SubElement(domain, f"{{{QEMU_NAMESPACE}}}commandline")
    network = f"virtio-net-pci,netdev={NETDEV},bus=pcie.0,addr={NETWORK_SLOT}"
    for arg in ("-netdev", netdev(spec.ssh_port), "-device", network):
        ET.SubElement(commandline, f"{{{QEMU_NAMESPACE}}}arg", value=arg)
    return ET.tostring(domain, encoding="unicode")


def disk_xml(disk: Disk, target: str) -> str:
    """An attached disk as libvirt's device: the raw image read and written directly (no host page cache, as the
    qemu driver's), never trimmed, a SCSI disk known to the guest by its serial."""
    element = ET.Element("disk", type="file", device="disk")
    ET.SubElement(element, "driver", name="qemu", type="raw", cache="none", io="threads", discard="ignore")
    ET.SubElement(element, "source", file=str(disk.path))
    ET.SubElement(element, "target", dev=target, bus="scsi")
    ET.SubElement(element, "serial").text = disk.serial
    return ET.tostring(element, encoding="unicode")


def _find_disk(domain: ET.Element, serial: str) -> ET.Element | None:
    return next((disk for disk in domain.iter("disk") if disk.findtext("serial") == serial), None)


def _scsi_name(index: int) -> str:
    """sda, sdb, ... sdz, sdaa, ...: the name libvirt needs for a SCSI disk's target (unique in the domain)."""
    letters = ""
    while index >= 0:
        index, letters = index // 26 - 1, chr(ord("a") + index % 26) + letters
    return f"sd{letters}"
