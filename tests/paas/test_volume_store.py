"""Volumes with a hard size limit, for real: ext4 images loop-mounted on this host, and written to from real
containers until the filesystem says no. Every mount under the test's directory is undone afterwards."""

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hosting.paas.images import BusyboxMissing, sample_context
from hosting.paas.volumes import LocalVolumes, VolumeError
from tests.containers import docker, wait_for

MiB = 1024 * 1024

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="volumes are loop mounts: the tests run as root")


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_docker = pytest.mark.skipif(not _docker_answers(), reason="needs a Docker engine (`docker info` fails)")


def mounts_under(directory: Path) -> list[str]:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [point for point in points if point.startswith(f"{directory}/")]


def loop_devices_of(image: Path) -> list[str]:
    """Loop devices backed by `image`, also once it is deleted (losetup -j needs the file to exist)."""
    listing = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"], capture_output=True, text=True
    ).stdout
    return [line.split()[0] for line in listing.splitlines() if str(image) in line]


@pytest.fixture
def volumes(tmp_path: Path) -> Iterator[LocalVolumes]:
    try:
        yield LocalVolumes(tmp_path / "volumes")
    finally:
        for point in sorted(mounts_under(tmp_path), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", point], check=False)
        for image in tmp_path.rglob("*.ext4"):
            image.unlink()  # pytest keeps the last runs' directories: no gigabytes left in them


@pytest.fixture
def containers() -> Iterator[list[str]]:
    """Names of containers a test starts; removed afterwards, whatever happened."""
    names: list[str] = []
    yield names
    for name in names:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


@pytest.fixture(scope="module")
def image() -> str:
    """A busybox image: the platform's own if this engine has one, else strata/static built offline (untagged)."""
    for tag in ("strata/static:latest", "strata/hello:latest"):
        found = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True, text=True)
        if found.returncode == 0:
            return found.stdout.strip()
    try:
        context = sample_context("static")
    except BusyboxMissing as exc:
        pytest.skip(str(exc))
    built = subprocess.run(["docker", "build", "-q", "-"], input=context, capture_output=True, check=True)
    return built.stdout.decode().strip()


def in_container(image: str, mount: Path, script: str, *options: str) -> str:
    """Run `script` in a container of `image` as user 1000, the volume at /data; its output (or id, with -d)."""
    common = ["--network=none", "--user=1000:1000", f"--volume={mount}:/data", "--entrypoint=/bin/sh"]
    return docker("run", *options, *common, image, "-c", script)


@pytest.mark.parametrize("size_mib", [16, 64, 1024])
def test_a_volume_lets_files_use_its_size_within_a_percent(volumes: LocalVolumes, size_mib: int) -> None:
    started = time.monotonic()
    mount = volumes.create("acme", "data", size_mib)
    took = time.monotonic() - started
    usage = volumes.usage("acme", "data")
    fs = os.statvfs(mount)
    free = fs.f_bavail * fs.f_frsize
    print(
        f"\n{size_mib} MiB: created in {took * 1000:.0f} ms; size {usage.size_bytes / (size_mib * MiB):.5f}, "
        f"free on a fresh volume {free / (size_mib * MiB):.5f} of it"
    )
    assert took < 30
    assert mount == volumes.path("acme", "data") and os.path.ismount(mount)
    assert 0.99 * size_mib * MiB <= free <= usage.size_bytes <= 1.005 * size_mib * MiB
    assert usage.used_bytes == usage.size_bytes - free
    image = mount.with_name("data.ext4")
    assert image.stat().st_blocks * 512 >= image.stat().st_size  # fully allocated: its space is the volume's
    assert image.stat().st_size >= size_mib * MiB
    assert (volumes.root.stat().st_mode & 0o777, mount.stat().st_mode & 0o777) == (0o700, 0o777)
    options = subprocess.run(["findmnt", "-n", "-o", "OPTIONS", str(mount)], capture_output=True, text=True).stdout
    assert {"nodev", "nosuid", "noatime"} <= set(options.strip().split(","))
    [device] = loop_devices_of(image)
    autoclear = subprocess.run(["losetup", "-n", "-O", "AUTOCLEAR", device], capture_output=True, text=True).stdout
    assert autoclear.strip() == "1"


@pytest.mark.skipif(shutil.which("fstrim") is None, reason="needs fstrim (util-linux)")
def test_fstrim_cannot_make_the_image_sparse(volumes: LocalVolumes) -> None:
    """Debian's weekly fstrim.timer trims every mounted filesystem: through a loop device, that punches holes
    in the image, and the host could then hand the volume's space to others."""
    mount = volumes.create("acme", "data", 64)
    image = mount.with_name("data.ext4")
    trimmed = subprocess.run(["fstrim", "-v", str(mount)], capture_output=True, text=True)
    assert trimmed.returncode != 0, trimmed.stdout
    assert "not supported" in trimmed.stderr
    assert image.stat().st_blocks * 512 >= image.stat().st_size


@needs_docker
@pytest.mark.parametrize("size_mib", [16, 64])
def test_a_container_writing_past_the_size_gets_enospc_and_the_host_nothing(
    volumes: LocalVolumes, image: str, size_mib: int
) -> None:
    mount = volumes.create("acme", "data", size_mib)
    backing = mount.with_name("data.ext4")
    allocated = backing.stat().st_blocks
    host = os.statvfs(volumes.root)
    host_free = host.f_bavail * host.f_frsize
    script = "dd if=/dev/zero of=/data/fill bs=64k 2>&1; echo status $?; sync; stat -c 'bytes %s' /data/fill"
    output = in_container(image, mount, script, "--rm")
    assert "No space left on device" in output, output
    assert "status 1" in output, output
    written = int(output.split("bytes ")[1])
    print(f"\n{size_mib} MiB: the container wrote {written / (size_mib * MiB):.5f} of it before ENOSPC")
    assert 0.99 * size_mib * MiB <= written <= 1.005 * size_mib * MiB
    assert backing.stat().st_blocks == allocated
    host = os.statvfs(volumes.root)
    assert host_free - host.f_bavail * host.f_frsize < size_mib * MiB  # other runs may write on this host too
    assert volumes.usage("acme", "data").used_bytes >= written


def test_the_data_survives_an_unmount_as_a_reboot_does(volumes: LocalVolumes) -> None:
    mount = volumes.create("acme", "data", 16)
    (mount / "kept.txt").write_text("still here")
    subprocess.run(["umount", str(mount)], check=True)
    assert not os.path.ismount(mount)
    with pytest.raises(VolumeError, match="not mounted"):
        volumes.usage("acme", "data")
    assert volumes.ensure_mounted("acme", "data") == mount
    assert volumes.ensure_mounted("acme", "data") == mount
    assert mounts_under(volumes.root) == [str(mount)]  # once, however often asked
    assert (mount / "kept.txt").read_text() == "still here"
    assert mount.stat().st_mode & 0o777 == 0o777


def test_a_volume_without_an_image_does_not_mount(volumes: LocalVolumes) -> None:
    with pytest.raises(VolumeError, match="does not exist"):
        volumes.ensure_mounted("acme", "nothing")


@needs_docker
def test_removing_a_volume_a_container_holds_frees_it_when_the_container_ends(
    volumes: LocalVolumes, image: str, containers: list[str]
) -> None:
    mount = volumes.create("acme", "data", 16)
    backing = mount.with_name("data.ext4")
    name = f"strata-volume-test-{uuid.uuid4().hex[:12]}"
    containers.append(name)
    in_container(image, mount, "echo written > /data/note; exec sleep 300", "-d", f"--name={name}")
    wait_for(lambda: docker("exec", name, "cat", "/data/note").strip() == "written", what="the container's write")
    [device] = loop_devices_of(backing)

    volumes.remove("acme", "data")
    volumes.remove("acme", "data")  # gone already: fine

    assert not backing.exists() and not mount.exists() and mounts_under(volumes.root) == []
    assert docker("exec", name, "cat", "/data/note").strip() == "written"  # its data lives while it runs
    assert loop_devices_of(backing) == [device]
    docker("rm", "-f", name)
    wait_for(lambda: loop_devices_of(backing) == [], timeout=10, what=f"{device} to be released")


def test_removing_a_volume_a_host_process_holds_unmounts_it_lazily(volumes: LocalVolumes) -> None:
    mount = volumes.create("acme", "data", 16)
    backing = mount.with_name("data.ext4")
    with (mount / "open.txt").open("w") as held:
        volumes.remove("acme", "data")
        assert not backing.exists() and not mount.exists() and mounts_under(volumes.root) == []
        held.write("the holder may still write")
        held.flush()
        os.fsync(held.fileno())
        assert loop_devices_of(backing) != []
    wait_for(lambda: loop_devices_of(backing) == [], timeout=10, what="the loop device to be released")


def test_a_volume_is_created_once(volumes: LocalVolumes) -> None:
    mount = volumes.create("acme", "data", 16)
    (mount / "kept.txt").write_text("mine")
    with pytest.raises(VolumeError, match="exists"):
        volumes.create("acme", "data", 32)
    assert os.path.ismount(mount) and (mount / "kept.txt").read_text() == "mine"


def test_a_volume_bigger_than_the_host_is_refused_with_the_numbers_and_leaves_nothing(
    volumes: LocalVolumes,
) -> None:
    volumes.root.mkdir()
    host = os.statvfs(volumes.root)
    free_mib = host.f_bavail * host.f_frsize // MiB
    with pytest.raises(VolumeError, match=rf"the host has \d+ MiB free, the volume needs {free_mib + 1024} MiB"):
        volumes.create("acme", "data", free_mib + 1024)
    assert sorted(path.name for path in volumes.root.rglob("*")) == ["acme"]  # the tenant's directory alone
    assert mounts_under(volumes.root) == []


@pytest.mark.parametrize(
    "tenant, name",
    [
        ("..", "data"),
        ("acme", "../x"),
        ("acme", "a/b"),
        ("acme", ""),
        ("Acme", "data"),
        ("acme", "-"),
        ("acme", "data\n"),
    ],
)
def test_names_that_could_leave_the_root_are_refused(volumes: LocalVolumes, tenant: str, name: str) -> None:
    for call in (volumes.path, volumes.ensure_mounted, volumes.remove, volumes.usage):
        with pytest.raises(ValueError):
            call(tenant, name)
    with pytest.raises(ValueError):
        volumes.create(tenant, name, 16)
    assert not volumes.root.exists()


def test_a_volume_smaller_than_16_mib_is_refused(volumes: LocalVolumes) -> None:
    with pytest.raises(ValueError, match="16 MiB"):
        volumes.create("acme", "data", 8)


def test_a_volume_still_held_elsewhere_is_never_mounted_a_second_time(volumes: LocalVolumes) -> None:
    """A mount namespace of its own (a container's, here `unshare`'s) keeps the loop device after the host
    unmounts: mounting the image again would put two ext4 instances on one file."""
    mount = volumes.create("acme", "data", 16)
    (mount / "kept").write_text("one writer\n")
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "60"])
    try:
        wait_for(lambda: len(loop_devices_of(volumes.image("acme", "data"))) == 1, what="the loop device")
        time.sleep(0.2)  # the namespace is made
        with pytest.raises(VolumeError, match="still held on the host"):
            volumes.unmount("acme", "data")  # the host's mount goes, the namespace's stays
        with pytest.raises(VolumeError, match="not mounted a second time"):
            volumes.ensure_mounted("acme", "data")
        assert len(loop_devices_of(volumes.image("acme", "data"))) == 1
    finally:
        holder.kill()
        holder.wait()
    assert (volumes.ensure_mounted("acme", "data") / "kept").read_text() == "one writer\n"  # once it is free
    assert len(loop_devices_of(volumes.image("acme", "data"))) == 1
