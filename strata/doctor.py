"""`strata doctor`: what this machine has and runs that the platform needs, each with what to do if not."""

import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import aiodocker

from gateway.config import Files
from gateway.haproxy import HAProxy
from hosting.iaas import detect_accel, find_node_image
from strata.config import Settings
from tenants.client import ApiError, StrataClient

BUSYBOX = Path("/bin/busybox")
PROBE_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = False  # the platform cannot run apps without it


def run_checks(settings: Settings) -> list[Check]:
    return [
        _daemon(settings),
        asyncio.run(_docker()),
        _front_door(settings),
        _qemu(),
        Check("accel", True, str(detect_accel())),
        _node_image(settings),
        _libvirt(settings.libvirt_uri),
        Check("busybox-static", BUSYBOX.exists(), str(BUSYBOX) if BUSYBOX.exists() else "missing: run `make install`"),
    ]


def _daemon(settings: Settings) -> Check:
    try:
        with StrataClient(socket=settings.api_socket, timeout=PROBE_TIMEOUT_SECONDS) as client:
            health = client.health()
    except ApiError as exc:
        return Check("daemon", False, exc.message, required=True)
    return Check("daemon", True, f"running, version {health.version}, API on unix:{settings.api_socket}", True)


async def _docker() -> Check:
    try:
        async with aiodocker.Docker() as docker:
            version = await asyncio.wait_for(docker.version(), PROBE_TIMEOUT_SECONDS)
            images = await docker.images.list(filters={"reference": ["strata/*"]})
    except (aiodocker.DockerError, OSError, ValueError, TimeoutError) as exc:
        return Check("docker", False, f"engine not answering ({exc}); start dockerd", required=True)
    tags = sorted(tag for image in images for tag in image.get("RepoTags") or [])
    listed = ", ".join(tags) or "no strata images yet"
    return Check("docker", True, f"engine {version['Version']}; images: {listed}", required=True)


def _front_door(settings: Settings) -> Check:
    """The HAProxy the front door runs on: its version, and whether one serves for this home now."""
    try:
        output = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired):
        return Check("front door", False, "haproxy missing: run `make install` (Debian's haproxy)", required=True)
    version = output.stdout.splitlines()[0].removeprefix("HAProxy version ").split(" ")[0]
    files = Files(settings.home / "haproxy")
    pid = HAProxy(files, files.root / "haproxy.log").pid()
    serving = f"serving (master pid {pid}, runtime API {files.runtime_socket})" if pid else "not running"
    return Check("front door", True, f"HAProxy {version}; {serving}", required=True)


def _node_image(settings: Settings) -> Check:
    image = find_node_image(settings.images_dir)
    if image is None:
        return Check("node image", False, f"not built in {settings.images_dir}: `strata images node-build` (VM nodes)")
    return Check("node image", True, f"{image.directory} ({image.allocated_bytes() / 1024**2:.0f} MiB)")


def _libvirt(uri: str | None) -> Check:
    """Whether the libvirt driver's libvirt answers (tried only when `STRATA_LIBVIRT_URI` asks for it)."""
    if not uri:
        return Check("libvirt", True, "not used: set STRATA_LIBVIRT_URI for the libvirt driver (qemu needs none)")
    try:
        import libvirt  # libvirt-python only where libvirt is used
    except ImportError:
        return Check("libvirt", False, "libvirt-python missing: pip install 'strata[libvirt]'")
    try:
        connection = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        return Check("libvirt", False, f"{uri}: {exc.get_error_message()}")
    try:
        major, minor = divmod(connection.getLibVersion() // 1000, 1000)
        return Check("libvirt", True, f"{uri}: libvirt {major}.{minor}, {connection.getType()}")
    finally:
        connection.close()


def _qemu() -> Check:
    binary = shutil.which("qemu-system-x86_64")
    if binary is None:
        return Check("qemu", False, "qemu-system-x86_64 missing: run `make install`")
    first_line = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_SECONDS
    ).stdout.splitlines()[0]
    return Check("qemu", True, first_line)
