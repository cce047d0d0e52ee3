"""The libvirt driver's domain, and its lifecycle against a real libvirtd (no guest booted: that is the VM
tests' part, `tests/iaas`)."""

import asyncio
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import libvirt
import pytest

from hosting.iaas.accel import Accel
from hosting.iaas.driver import GuestImage, HypervisorError, Identity, VmSpec, VmState
from hosting.iaas.flavors import flavor
from hosting.iaas.libvirt import QEMU_NAMESPACE, LibvirtDriver, domain_xml
from hosting.iaas.net import free_port
from strata.config import Settings
from strata.doctor import run_checks
from tests.libvirtd import libvirtd

IMAGE = GuestImage("node-test", Path("/img/vmlinuz"), Path("/img/initrd.img"), Path("/img/base.ext4"))
SPEC = VmSpec("n1", flavor("medium"), IMAGE, ssh_port=40022)
IDENTITY = Identity("n1", "-----BEGIN OPENSSH PRIVATE KEY-----\n...\n", "ssh-ed25519 AAAA strata")


def parsed(accel: Accel) -> ET.Element:
    return ET.fromstring(domain_xml(SPEC, Path("/vms/n1"), accel))


def test_kvm_gets_the_host_cpu_and_tcg_the_emulated_one() -> None:
    kvm, tcg = parsed(Accel("kvm")), parsed(Accel("tcg", "pvm"))
    assert (kvm.get("type"), kvm.find("cpu").get("mode")) == ("kvm", "host-passthrough")
    assert (tcg.get("type"), tcg.find("cpu").get("mode")) == ("qemu", "maximum")
    assert tcg.findtext("features/tcg/tb-cache") == "256" and kvm.find("features/tcg") is None
    assert (kvm.findtext("vcpu"), kvm.findtext("memory"), kvm.find("memory").get("unit")) == ("2", "2048", "MiB")


def test_the_network_is_qemus_restricted_user_mode_with_ssh_on_loopback_only() -> None:
    domain = parsed(Accel("tcg"))
    args = [arg.get("value") for arg in domain.iter(f"{{{QEMU_NAMESPACE}}}arg")]
    assert args[:2] == ["-netdev", "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22"]
    assert args[2] == "-device" and args[3].startswith("virtio-net-pci,netdev=n0,")
    assert domain.find("devices/interface") is None  # libvirt's own user network cannot be restricted


def test_identity_goes_by_fw_cfg_and_the_guest_never_reboots() -> None:
    domain = parsed(Accel("tcg"))
    assert {entry.get("name"): entry.get("file") for entry in domain.findall("sysinfo/entry")} == {
        "opt/strata/authorized_keys": "/vms/n1/authorized_keys",
        "opt/strata/hostname": "/vms/n1/hostname",
        "opt/strata/ssh_host_ed25519_key": "/vms/n1/host_key",
    }
    assert domain.find("sysinfo").get("type") == "fwcfg" and domain.find("genid") is not None
    assert [domain.findtext(event) for event in ("on_poweroff", "on_reboot", "on_crash")] == ["destroy"] * 3
    assert domain.find("devices/disk/source").get("file") == "/vms/n1/disk.qcow2"
    assert domain.find("devices/serial/source").get("path") == "/vms/n1/console.log"


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


def test_an_unreachable_libvirt_is_a_clear_error(tmp_path: Path) -> None:
    base = tmp_path / "base.raw"
    base.write_bytes(b"\0" * 4096)
    driver = LibvirtDriver(tmp_path / "vms", Accel("tcg", "test"), f"qemu:///system?socket={tmp_path}/none")
    spec = VmSpec("n1", flavor("small"), GuestImage("t", base, base, base), ssh_port=free_port())
    with pytest.raises(HypervisorError, match=r"VM n1: libvirt \(qemu:///system\?socket=.*/none\): .*connect"):
        asyncio.run(driver.create(spec, IDENTITY))
    assert driver.names() == []  # nothing left behind


def test_doctor_says_whether_libvirt_answers(uri: str, tmp_path: Path) -> None:
    settings = Settings.from_env(tmp_path)
    (unused,) = [c for c in run_checks(settings) if c.name == "libvirt"]  # not asked for: listed, not tried
    assert unused.ok and unused.detail.startswith("not used: set STRATA_LIBVIRT_URI")
    (answers,) = [c for c in run_checks(replace(settings, libvirt_uri=uri)) if c.name == "libvirt"]
    assert answers.ok and re.fullmatch(rf"{re.escape(uri)}: libvirt \d+\.\d+, QEMU", answers.detail)
    gone = f"qemu:///system?socket={tmp_path}/none"
    (refused,) = [c for c in run_checks(replace(settings, libvirt_uri=gone)) if c.name == "libvirt"]
    assert not refused.ok and refused.detail.startswith(f"{gone}: Failed to connect socket")
