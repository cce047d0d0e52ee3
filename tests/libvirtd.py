"""A libvirtd of the test's own, with its QEMU driver, every file of it under one directory of the test.

libvirtd run as root reads `/etc/libvirt` and keeps its state in `/run/libvirt`, `/var/lib/libvirt`, …: here
it runs in a mount namespace of its own where those are the test's directories, so the host's are never
touched and the tests need no system service. It runs QEMU as root (the tests' files are root's and private)
and lets QEMU write its output to files (no virtlogd). Clients reach it by its socket: `uri`.
"""

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import libvirt

SYSTEM_DIRECTORIES = {  # in the namespace → the test's directory
    "/etc/libvirt": "etc",
    "/run/libvirt": "run",
    "/var/lib/libvirt": "lib",
    "/var/log/libvirt": "log",
    "/var/cache/libvirt": "cache",
}
QEMU_CONF = 'user = "+0"\ngroup = "+0"\nstdio_handler = "file"\n'


@contextmanager
def libvirtd(directory: Path, netns: str | None = None) -> Iterator[str]:
    """Run libvirtd until the block ends; yields its URI. Its VMs are destroyed first. In the network namespace
    `netns` if given (a remote host's): its VMs' forwards are then on that namespace's loopback."""
    binary = shutil.which("libvirtd")
    assert binary is not None, "libvirtd missing: run `make install`"
    for name in SYSTEM_DIRECTORIES.values():
        (directory / name).mkdir(parents=True, exist_ok=True)
    (directory / "etc" / "qemu.conf").write_text(QEMU_CONF)
    mounts = "".join(
        f"mkdir -p {target} && mount --bind {directory / name} {target} && "
        for target, name in SYSTEM_DIRECTORIES.items()
    )
    with (directory / "libvirtd.log").open("wb") as log:
        process = subprocess.Popen(
            [
                *(["nsenter", f"--net=/run/netns/{netns}"] if netns else []),
                *["unshare", "--mount", "--propagation", "private", "sh", "-c", f"{mounts}exec {binary}"],
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    uri = f"qemu:///system?socket={directory / 'run' / 'libvirt-sock'}"
    try:
        _until_it_answers(uri, process, directory / "libvirtd.log")
        yield uri
    finally:
        _destroy_domains(uri)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _until_it_answers(uri: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"libvirtd exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            libvirt.open(uri).close()
            return
        except libvirt.libvirtError:
            time.sleep(0.1)
    raise AssertionError(f"libvirtd did not answer on {uri} within {timeout} s")


def _destroy_domains(uri: str) -> None:
    """What a test left running: QEMU processes outlive libvirtd."""
    try:
        connection = libvirt.open(uri)
    except libvirt.libvirtError:
        return
    try:
        for domain in connection.listAllDomains():
            if domain.isActive():
                domain.destroy()  # returns once QEMU is gone
            domain.undefine()
    finally:
        connection.close()
