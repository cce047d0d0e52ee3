"""The node guest image, built for real and booted under QEMU, reached with the OpenSSH client.

Needs root, apt, debootstrap and QEMU: runs only with STRATA_VM_TESTS=1. The image is cached in
STRATA_TEST_IMAGES_DIR (default /var/tmp/strata-test-images), so only the first run builds it.
"""

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hosting.iaas import NodeImage, build_node_image, find_node_image, fw_cfg_args, recipe_digest
from hosting.iaas.guest_image import KERNEL_ARGS, SSHD_HOST_KEY, SSHD_PID_FILE
from tests.harness import free_port

pytestmark = [
    pytest.mark.skipif(os.environ.get("STRATA_VM_TESTS") != "1", reason="VM tests run with STRATA_VM_TESTS=1"),
    pytest.mark.timeout(900),  # a cold build downloads and debootstraps; TCG boots slowly
]

IMAGES_DIR = Path(os.environ.get("STRATA_TEST_IMAGES_DIR", "/var/tmp/strata-test-images"))
BOOT_TIMEOUT_SECONDS = 300
SSH_TRY_TIMEOUT_SECONDS = 20  # QEMU's user network accepts TCP before sshd listens: each try is bounded
QEMU_STOP_TIMEOUT_SECONDS = 10
HOSTNAME = "node-test"


@pytest.fixture(scope="module")
def image() -> NodeImage:
    return build_node_image(IMAGES_DIR)


def keygen(path: Path, comment: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


@dataclass
class Node:
    """A booted VM of the image, as a hypervisor driver would start it, and an SSH client that trusts its key."""

    port: int
    client_key: Path
    known_hosts: Path
    console: Path

    def trust(self, host_public_key: str) -> None:
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_public_key}\n")

    def ssh(self, command: str, *, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
        args = ["-F", "/dev/null", "-p", str(self.port), "-i", str(self.client_key), "-o", "IdentitiesOnly=yes"]
        for option in (
            "BatchMode=yes",
            "StrictHostKeyChecking=yes",
            f"UserKnownHostsFile={self.known_hosts}",
            "GlobalKnownHostsFile=/dev/null",
            "ConnectTimeout=5",
        ):
            args += ["-o", option]
        return subprocess.run(
            ["ssh", *args, "root@127.0.0.1", command], input=stdin, capture_output=True, text=True, timeout=timeout
        )


def start_qemu(image: NodeImage, run: Path, port: int) -> subprocess.Popen[bytes]:
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", image.disk, run / "disk.qcow2"], check=True
    )
    command = [
        "qemu-system-x86_64",
        *("-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max", "-M", "q35", "-m", "1024"),
        *("-nodefaults", "-display", "none", "-no-reboot", "-serial", f"file:{run / 'console.log'}"),
        *("-kernel", image.kernel, "-initrd", image.initrd, "-append", KERNEL_ARGS),
        *("-drive", f"file={run / 'disk.qcow2'},if=none,id=d0,format=qcow2,cache=unsafe"),
        *("-device", "virtio-blk-pci,drive=d0"),
        *("-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22"),
        *("-device", "virtio-net-pci,netdev=n0", "-device", "virtio-rng-pci", "-device", "vmgenid,guid=auto"),
        *fw_cfg_args(authorized_keys=run / "client.pub", host_key=run / "host", hostname=run / "hostname"),
    ]
    with (run / "qemu.log").open("wb") as log:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(QEMU_STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until(node: Node, qemu: subprocess.Popen[bytes], command: str, deadline: float) -> None:
    """Until `command` succeeds over SSH; fails with the console's tail if QEMU dies or the deadline passes."""
    while True:
        try:
            if node.ssh(command, timeout=SSH_TRY_TIMEOUT_SECONDS).returncode == 0:
                return
        except subprocess.TimeoutExpired:
            pass
        console = node.console.read_text(errors="replace")[-2000:] if node.console.exists() else ""
        assert qemu.poll() is None, f"QEMU exited ({qemu.returncode}); console:\n{console}"
        assert time.monotonic() < deadline, f"`{command}` failed for {BOOT_TIMEOUT_SECONDS}s; console:\n{console}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def node(image: NodeImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    run = tmp_path_factory.mktemp("node")
    keygen(run / "client", "client")
    host_public_key = keygen(run / "host", "host")
    (run / "hostname").write_text(HOSTNAME + "\n")
    port = free_port()
    booted = Node(port, run / "client", run / "known_hosts", run / "console.log")
    booted.trust(host_public_key)
    qemu = start_qemu(image, run, port)
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS
        wait_until(booted, qemu, "true", deadline)
        wait_until(booted, qemu, "docker info", deadline)
        yield booted
    finally:
        stop(qemu)


def test_the_image_is_complete_and_of_the_current_recipe(image: NodeImage) -> None:
    assert image.digest == recipe_digest()
    assert image.directory.name == f"node-{image.digest[:12]}"
    assert all(path.stat().st_size > 0 for path in (image.kernel, image.initrd, image.disk))
    assert find_node_image(IMAGES_DIR) == image
    assert image.allocated_bytes() < image.disk.stat().st_size  # the disk is sparse


def test_the_image_holds_no_key(image: NodeImage) -> None:
    def ls(directory: str) -> str:
        listing = subprocess.run(["debugfs", "-R", f"ls {directory}", image.disk], capture_output=True, text=True)
        return listing.stdout

    assert "sshd_config" in ls("/etc/ssh")
    assert "ssh_host_" not in ls("/etc/ssh")
    assert ".ssh" not in ls("/root")


def test_a_second_build_returns_the_built_image_without_building(image: NodeImage) -> None:
    disk_before = image.disk.stat()
    started = time.monotonic()
    again = build_node_image(IMAGES_DIR)
    assert time.monotonic() - started < 1
    assert again == image
    assert (image.disk.stat().st_ino, image.disk.stat().st_mtime_ns) == (disk_before.st_ino, disk_before.st_mtime_ns)


def test_a_node_boots_with_its_fw_cfg_identity_and_runs_docker(node: Node) -> None:
    assert node.ssh("hostname").stdout.strip() == HOSTNAME
    info = node.ssh("docker info --format '{{.Driver}} {{.LoggingDriver}} {{.CgroupVersion}}'")
    assert info.stdout.split() == ["overlay2", "local", "2"]
    assert node.ssh("stat -c '%a' /root/.ssh /root/.ssh/authorized_keys " + SSHD_HOST_KEY).stdout.split() == [
        "700",
        "600",
        "600",
    ]
    console = node.console.read_text(errors="replace")
    assert "strata-guest: sshd up " in console
    assert "strata-guest: docker ready " in console


def test_the_host_key_rotates_with_a_new_key_and_a_hangup(node: Node, tmp_path: Path) -> None:
    new_public_key = keygen(tmp_path / "rotated", "rotated")
    private_key = (tmp_path / "rotated").read_text()
    rotate = f"umask 077 && cat > {SSHD_HOST_KEY}.new && mv {SSHD_HOST_KEY}.new {SSHD_HOST_KEY}"
    rotated = node.ssh(f"{rotate} && kill -HUP $(cat {SSHD_PID_FILE})", stdin=private_key)
    assert rotated.returncode == 0, rotated.stderr
    old_known_hosts = node.known_hosts.read_text()
    node.trust(new_public_key)
    deadline = time.monotonic() + SSH_TRY_TIMEOUT_SECONDS
    while node.ssh("true").returncode != 0:  # sshd re-executes itself on SIGHUP
        assert time.monotonic() < deadline, "no login with the rotated host key"
        time.sleep(0.1)
    node.known_hosts.write_text(old_known_hosts)
    refused = node.ssh("true")
    assert refused.returncode == 255 and "Host key verification failed" in refused.stderr
    node.trust(new_public_key)
