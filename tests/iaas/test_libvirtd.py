"""The libvirt driver and `strata doctor` against a real libvirtd, one of the tests' own (`tests.libvirtd`: it
needs root and the libvirtd binary, as `make install` provides; no system service). No guest boots here: that
is `test_vm_nodes.py`, with STRATA_VM_TESTS=1."""

import asyncio
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import libvirt
import pytest

from hosting.iaas.accel import Accel
from hosting.iaas.driver import Disk, GuestImage, HypervisorError, Identity, VmSpec, VmState
from hosting.iaas.flavors import flavor
from hosting.iaas.libvirt import LibvirtDriver
from hosting.iaas.net import free_port
from strata.config import Settings
from strata.doctor import run_checks
from tests.libvirtd import libvirtd

IDENTITY = Identity("n1", "-----BEGIN OPENSSH PRIVATE KEY-----\n...\n", "ssh-ed25519 AAAA strata")


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with libvirtd(tmp_path_factory.mktemp("libvirtd")) as uri:
        yield uri


def test_a_vm_is_defined_in_libvirt_and_destroyed_with_its_files(uri: str, tmp_path: Path) -> None:
    """libvirt takes the domain as written; a guest that cannot boot is a clear error; destroy leaves nothing."""
    junk = tmp_path / "not-a-kernel"
    junk.write_bytes(b"\0" * 4096)
    driver = LibvirtDriver(tmp_path / "vms", Accel("tcg", "test"), uri)
    spec = VmSpec("n1", flavor("small"), GuestImage("t", junk, junk, junk), ssh_port=free_port())
    asyncio.run(driver.create(spec, IDENTITY))
    libvirtd = libvirt.open(uri)
    try:
        assert [domain.name() for domain in libvirtd.listAllDomains()] == ["n1"]
        assert driver.names() == ["n1"] and driver.spec("n1") == spec
        assert asyncio.run(driver.info("n1")).state == VmState.DEFINED
        with pytest.raises(HypervisorError, match="exists already"):
            asyncio.run(driver.create(spec, IDENTITY))
        with pytest.raises(HypervisorError, match=r"VM n1: libvirt .*kernel"):
            asyncio.run(driver.start("n1"))
        with pytest.raises(HypervisorError, match="cannot restore"):
            asyncio.run(driver.start("n1", restore=tmp_path / "snap"))
        asyncio.run(driver.destroy("n1"))
        assert libvirtd.listAllDomains() == [] and driver.names() == []
        assert not (tmp_path / "vms" / "n1").exists()
        asyncio.run(driver.destroy("n1"))  # gone already: fine
    finally:
        libvirtd.close()


def test_a_disk_attached_to_a_defined_domain_is_in_its_definition_until_detached(uri: str, tmp_path: Path) -> None:
    """Not running: the disk goes to the domain's definition only (what its next start has); the live half of
    LIVE|CONFIG is `test_vm_nodes.py`'s, on a booted guest."""
    junk = tmp_path / "not-a-kernel"
    junk.write_bytes(b"\0" * 4096)
    image = tmp_path / "data.ext4"
    image.write_bytes(b"\0" * 1024 * 1024)
    driver = LibvirtDriver(tmp_path / "vms", Accel("tcg", "test"), uri)
    spec = VmSpec("n2", flavor("small"), GuestImage("t", junk, junk, junk), ssh_port=free_port())
    asyncio.run(driver.create(spec, IDENTITY))
    libvirtd = libvirt.open(uri)
    try:

        def defined() -> ET.Element:
            return ET.fromstring(libvirtd.lookupByName("n2").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))

        assert defined().find("devices/controller[@type='scsi']").get("model") == "virtio-scsi"
        asyncio.run(driver.attach_disk("n2", Disk("sv-1", image)))
        asyncio.run(driver.attach_disk("n2", Disk("sv-1", image)))  # again: fine, nothing more
        (disk,) = [d for d in defined().iter("disk") if d.findtext("serial") == "sv-1"]
        assert disk.find("source").get("file") == str(image) and disk.find("target").get("bus") == "scsi"
        assert disk.find("driver").get("cache") == "none" and disk.find("driver").get("discard") == "ignore"
        assert driver.disks("n2") == [Disk("sv-1", image)]
        asyncio.run(driver.detach_disk("n2", "sv-1"))
        assert [d for d in defined().iter("disk") if d.findtext("serial")] == [] and driver.disks("n2") == []
    finally:
        asyncio.run(driver.destroy("n2"))
        libvirtd.close()


def test_doctor_says_whether_libvirt_answers(uri: str, tmp_path: Path) -> None:
    settings = Settings.from_env(tmp_path)
    (unused,) = [c for c in run_checks(settings) if c.name == "libvirt"]  # not asked for: listed, not tried
    assert unused.ok and unused.detail.startswith("not used: set STRATA_LIBVIRT_URI")
    (answers,) = [c for c in run_checks(replace(settings, libvirt_uri=uri)) if c.name == "libvirt"]
    assert answers.ok and re.fullmatch(rf"{re.escape(uri)}: libvirt \d+\.\d+, QEMU", answers.detail)
    gone = f"qemu:///system?socket={tmp_path}/none"
    (refused,) = [c for c in run_checks(replace(settings, libvirt_uri=gone)) if c.name == "libvirt"]
    assert not refused.ok and refused.detail.startswith(f"{gone}: Failed to connect socket")
