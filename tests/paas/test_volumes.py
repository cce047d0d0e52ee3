"""Volumes through the platform: real loop-mounted filesystems bound into real containers, kept across deploys
and a killed daemon, full at their size, counted against the plan, one writer at a time."""

import json
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tenants.client import ApiError
from tenants.enums import InstanceState
from tenants.schemas import AppSpec, TenantCreate, VolumeCreate, VolumeMount
from tests.containers import docker, platform_id, ready, remove_everything_of, unmount_volumes, wait_for
from tests.harness import Daemon, start_daemon

# Serves its volume over HTTP: `first` written once, ever; a line in `starts` per start of an instance.
KEEPER = AppSpec(
    image="strata/static",
    command=["/bin/sh", "-c", "trap 'exit 0' TERM INT; [ -f /data/first ] || date +%s%N > /data/first; "
             "echo $STRATA_INSTANCE >> /data/starts; httpd -f -p 8080 -h /data & wait"],
    memory_mib=32,
    cpu_millicores=100,
    volumes=[VolumeMount(volume="data", path="/data")],
)  # fmt: skip


def setup(daemon: Daemon, tenant: str, size_mib: int = 32, plan: str = "small") -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=tenant, plan=plan))
        api.create_volume(tenant, VolumeCreate(name="data", size_mib=size_mib))


def fetch(endpoint: str | None, path: str) -> str:
    return httpx.get(f"http://{endpoint}/{path}", timeout=5).text


def test_data_outlives_a_redeploy_and_a_killed_daemon(tmp_path: Path, unique: str) -> None:
    daemon = start_daemon(tmp_path / "home", local_node=True)
    try:
        with daemon.operator() as api:
            api.bootstrap_images()
        setup(daemon, unique)
        with daemon.operator() as api:
            api.deploy(unique, "web", KEEPER)
        [first] = ready(daemon, unique, "web", 1)
        born = fetch(first.endpoint, "first")

        with daemon.operator() as api:
            api.deploy(unique, "web", KEEPER.model_copy(update={"env": {"V": "2"}}))
        [second] = ready(daemon, unique, "web", 1, revision=2)
        assert fetch(second.endpoint, "first") == born
        assert fetch(second.endpoint, "starts").split() == [first.id, second.id]
        with daemon.operator() as api:
            events = [e for e in reversed(api.events(unique)) if e.action in ("instance.create", "instance.remove")]
        order = [(e.action, e.detail["instance"]) for e in events]
        # stop, then start: the old instance was gone before the new one was made (one writer)
        assert order.index(("instance.remove", first.id)) < order.index(("instance.create", second.id)), order

        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(timeout=10)
        daemon.stop_front_door()
        daemon = start_daemon(daemon.home, local_node=True, like=daemon)
        with daemon.operator() as api:
            api.restart(unique, "web")
        [third] = ready(daemon, unique, "web", 1, revision=3)
        assert fetch(third.endpoint, "first") == born
        assert fetch(third.endpoint, "starts").split() == [first.id, second.id, third.id]
    finally:
        daemon.stop()
        remove_everything_of(platform_id(daemon))
        unmount_volumes(daemon.home)


def test_a_write_past_the_size_fails_with_no_space_in_the_container(platform: Daemon, unique: str) -> None:
    setup(platform, unique, size_mib=32)
    with platform.operator() as api:
        api.deploy(unique, "web", KEEPER)
    [instance] = ready(platform, unique, "web", 1)
    script = "dd if=/dev/zero of=/data/fill bs=64k 2>&1; ls -l /data/fill"
    run = subprocess.run(["docker", "exec", instance.container_id, "sh", "-c", script], capture_output=True, text=True)
    assert "No space left on device" in run.stdout, run.stdout + run.stderr
    written = int(run.stdout.split()[-5])  # ls -l: mode links user group SIZE month day time name
    assert 0.99 * 32 * 2**20 <= written + 64 * 1024 and written <= 32 * 2**20, written
    with platform.operator() as api:
        shown = api.volume(unique, "data")
    assert shown.used_mib is not None and shown.used_mib >= 0.98 * 32 and shown.mounted_by == ["web"]


def test_storage_past_the_plan_is_refused_with_the_numbers(platform: Daemon, unique: str) -> None:
    setup(platform, unique, size_mib=1000)  # the small plan allows 1024 MiB of volumes in all
    with platform.operator() as api, pytest.raises(ApiError) as refused:
        api.create_volume(unique, VolumeCreate(name="more", size_mib=100))
    assert (refused.value.status, refused.value.code) == (403, "quota_exceeded"), refused.value
    assert "1000 MiB" in str(refused.value) and "1024 MiB" in str(refused.value)
    with platform.operator() as api:
        assert [v.name for v in api.volumes(unique)] == ["data"]
        assert api.tenant(unique).usage.storage_mib == 1000
    assert not (platform.home / "volumes" / unique / "more").exists()


def test_one_writer_a_mounted_volume_is_kept_and_forced_away(platform: Daemon, unique: str) -> None:
    setup(platform, unique)
    with platform.operator() as api:
        with pytest.raises(ApiError, match="one instance per volume"):
            api.deploy(unique, "web", KEEPER.model_copy(update={"replicas": 2}))
        api.deploy(unique, "web", KEEPER)
        with pytest.raises(ApiError, match="one instance per volume"):
            api.scale(unique, "web", 3)
        with pytest.raises(ApiError, match="mounted by app 'web'"):
            api.deploy(unique, "other", KEEPER)
        with pytest.raises(ApiError, match="mounted by app 'web'"):
            api.delete_volume(unique, "data")
    ready(platform, unique, "web", 1)
    mount_point = platform.home / "volumes" / unique / "data"
    assert mount_point.is_mount()

    with platform.operator() as api:
        api.delete_volume(unique, "data", force=True)
        app = api.app(unique, "web")
    assert app.volumes == [] and app.revision == 2
    assert not mount_point.exists()

    def second_revision():  # type: ignore[no-untyped-def]
        with platform.operator() as api:
            return [i for i in api.instances(unique, "web") if i.revision == 2]

    # its new revision runs without the volume (and fails here: this app needs its /data)
    [instance] = wait_for(second_revision, what="an instance of revision 2")
    assert all(m["Destination"] != "/data" for m in json_mounts(instance.container_id))


def test_a_tenant_deleted_takes_its_volumes_filesystems(platform: Daemon, unique: str) -> None:
    setup(platform, unique)
    image = platform.home / "volumes" / unique / "data.ext4"
    assert image.exists()
    with platform.operator() as api:
        api.delete_tenant(unique)
    assert not image.exists() and not (platform.home / "volumes" / unique / "data").exists()


def test_a_volume_on_a_platform_that_never_had_it_mounted_again_after_a_reboot(platform: Daemon, unique: str) -> None:
    """After a reboot the mount point is an empty directory: an instance started there would write to the host's
    disk with no limit. The platform mounts the volume again before it starts one."""
    setup(platform, unique)
    with platform.operator() as api:
        api.deploy(unique, "web", KEEPER)
    [instance] = ready(platform, unique, "web", 1)
    born = fetch(instance.endpoint, "first")
    docker("stop", instance.container_id)
    mount_point = platform.home / "volumes" / unique / "data"
    subprocess.run(["umount", str(mount_point)], check=True)  # as a reboot leaves it
    assert not mount_point.is_mount()

    def restarted():  # type: ignore[no-untyped-def]
        with platform.operator() as api:
            [again] = api.instances(unique, "web")
        return again if again.restarts >= 1 and again.state == InstanceState.READY else None

    again = wait_for(restarted, timeout=60, what="the instance restarted")
    assert mount_point.is_mount() and fetch(again.endpoint, "first") == born


def json_mounts(container_id: str) -> list[dict[str, str]]:
    return json.loads(docker("inspect", "--format", "{{json .Mounts}}", container_id))  # type: ignore[no-any-return]
