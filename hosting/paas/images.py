"""Images without a registry: the sample images built offline from Debian's busybox-static, and the
build contexts for them (a root filesystem of one static binary and its applet links)."""

import io
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from hosting.paas.runtime import ImageMissing, NodeRuntime

BUSYBOX = Path("/bin/busybox")
SAMPLES = Path(__file__).parent / "sample_images"
SAMPLE_IMAGES = {"hello": "strata/hello:latest", "static": "strata/static:latest"}


class BusyboxMissing(Exception):
    """The static busybox the sample images are made of is not installed."""


@dataclass(frozen=True)
class BuiltImage:
    node: str
    tag: str


def sample_context(name: str, busybox: Path = BUSYBOX) -> bytes:
    """The build context of sample image `name`: its directory plus `rootfs/` with busybox in /bin."""
    if not busybox.exists():
        raise BusyboxMissing(f"{busybox} is missing: install Debian's busybox-static (`make install`)")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(SAMPLES / name, arcname=".", filter=_normalise)
        tar.add(busybox, arcname="rootfs/bin/busybox", filter=_normalise)
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"rootfs/bin/{applet}")
                link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
                tar.addfile(link)
        for directory in ("tmp", "www", "etc"):
            info = tarfile.TarInfo(f"rootfs/{directory}")
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
    return buffer.getvalue()


async def bootstrap(nodes: list[NodeRuntime]) -> list[BuiltImage]:
    """Build every sample image on every node (Docker's cache makes a rebuild quick)."""
    built = []
    for name, tag in SAMPLE_IMAGES.items():
        context = sample_context(name)
        for node in nodes:
            async for _ in node.build(context, tag):
                pass  # the output matters only when it fails, and `BuildFailed` carries the error
            built.append(BuiltImage(node.name, tag))
    return built


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Root-owned, reproducible entries: the same sources give the same layers (and cache hits)."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    if info.isfile() and info.name.endswith(".sh"):
        info.mode = 0o755
    return info


async def ship(reference: str, source: NodeRuntime, target: NodeRuntime) -> None:
    """Copy image `reference` from `source` to `target` (save → load, streamed): nodes pull from no registry,
    and a VM node's guest has no network at all. What a node holds is its engine's own business after this."""
    if await source.image(reference) is None:
        raise ImageMissing(
            f"image {reference} is in the platform's image store ({source.name}) neither; build or load it "
            "(`strata images bootstrap`, `strata images load FILE.tar`)"
        )
    await target.load(source.save(reference))
