"""The libvirt driver's domain as it writes it, and its errors when libvirt does not answer. Against a real
libvirtd: `tests/iaas/test_libvirtd.py`."""

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hosting.iaas.accel import Accel
from hosting.iaas.driver import GuestImage, HypervisorError, Identity, VmSpec
from hosting.iaas.flavors import flavor
from hosting.iaas.libvirt import QEMU_NAMESPACE, LibvirtDriver, domain_xml
from hosting.iaas.net import free_port

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


def test_an_unreachable_libvirt_is_a_clear_error(tmp_path: Path) -> None:
    base = tmp_path / "base.raw"
    base.write_bytes(b"\0" * 4096)
    driver = LibvirtDriver(tmp_path / "vms", Accel("tcg", "test"), f"qemu:///system?socket={tmp_path}/none")
    spec = VmSpec("n1", flavor("small"), GuestImage("t", base, base, base), ssh_port=free_port())
    with pytest.raises(HypervisorError, match=r"VM n1: libvirt \(qemu:///system\?socket=.*/none\): .*connect"):
        asyncio.run(driver.create(spec, IDENTITY))
    assert driver.names() == []  # nothing left behind
