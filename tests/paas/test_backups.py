"""Backups through the platform: real archives of real volumes, verified by a real scratch container, restored
into volumes an app runs on."""

import hashlib
import subprocess
import time
from pathlib import Path

import pytest

from tenants.client import ApiError
from tenants.enums import BackupState
from tenants.schemas import AppSpec, TenantCreate, VolumeCreate, VolumeMount
from tests.containers import ready
from tests.harness import Daemon

# Writes a little of everything into its volume on first start: files of two owners and modes, a directory,
# a symlink and a hard link; then serves the volume.
SEED = (
    "[ -f /data/seeded ] || { mkdir -p /data/dir && echo hello > /data/dir/a && echo private > /data/secret"
    " && chmod 600 /data/secret && ln -s dir/a /data/link && ln /data/dir/a /data/hard && touch /data/seeded; }"
)
WRITER = AppSpec(
    image="strata/static",
    command=["/bin/sh", "-c", f"trap 'exit 0' TERM INT; {SEED}; httpd -f -p 8080 -h /data & wait"],
    memory_mib=32,
    cpu_millicores=100,
    volumes=[VolumeMount(volume="data", path="/data")],
)


def checksums(root: Path) -> dict[str, str]:
    """What the host sees in a volume: every regular file's SHA-256, by relative path (lost+found left out)."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink() and "lost+found" not in path.parts
    }


def exec_in(container: str, script: str) -> str:
    done = subprocess.run(["docker", "exec", container, "sh", "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def seed(platform: Daemon, tenant: str) -> Path:
    """A new tenant's volume `data` (64 MiB) with the writer's files and 20 MB more; its mount point."""
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=tenant, plan="small"))
        api.create_volume(tenant, VolumeCreate(name="data", size_mib=64))
        api.deploy(tenant, "web", WRITER)
    [instance] = ready(platform, tenant, "web", 1)
    exec_in(instance.container_id, "dd if=/dev/urandom of=/data/blob bs=1M count=20 2>/dev/null")
    return platform.home / "volumes" / tenant / "data"


@pytest.fixture
def seeded(platform: Daemon, unique: str) -> Path:
    return seed(platform, unique)


def test_a_backup_is_verified_and_restores_every_file_as_it_was(platform: Daemon, unique: str, seeded: Path) -> None:
    before = checksums(seeded)
    assert {"dir/a", "secret", "hard", "blob", "seeded"} <= before.keys()
    with platform.operator() as api:
        backup = api.create_backup(unique, "data")
    assert backup.state == BackupState.VERIFIED, backup.message
    assert backup.files == len(before) and backup.size_bytes >= 20 << 20
    archive = platform.home / "backups" / unique / f"{backup.id}.tar"
    assert archive.exists() and hashlib.sha256(archive.read_bytes()).hexdigest() == backup.archive_sha256

    [instance] = ready(platform, unique, "web", 1)
    exec_in(instance.container_id, "rm -r /data/dir && echo changed > /data/secret && echo new > /data/extra")
    assert checksums(seeded) != before

    started = time.monotonic()
    with platform.operator() as api:
        restored = api.restore_backup(unique, backup.id)
        events = [e for e in api.events(unique) if e.detail.get("instance") == instance.id]
    took = time.monotonic() - started
    assert restored.name == "data" and took < 60
    assert checksums(seeded) == before
    assert (seeded / "link").readlink() == Path("dir/a") and (seeded / "hard").stat().st_nlink == 2
    assert oct((seeded / "secret").stat().st_mode & 0o777) == "0o600"
    assert any(e.action == "instance.remove" for e in events)  # stopped for the restore: nothing wrote meanwhile
    [again] = ready(platform, unique, "web", 1)  # started again on the restored data
    assert again.id != instance.id and exec_in(again.container_id, "cat /data/dir/a") == "hello\n"


def test_restores_into_another_volume_and_refuses_what_does_not_fit(
    platform: Daemon, unique: str, seeded: Path
) -> None:
    with platform.operator() as api:
        backup = api.create_backup(unique, "data")
        api.create_volume(unique, VolumeCreate(name="copy", size_mib=32))
        api.create_volume(unique, VolumeCreate(name="tiny", size_mib=16))
        with pytest.raises(ApiError, match="needs 2[0-9.]+ MiB, volume 'tiny' has 16 MiB") as refused:
            api.restore_backup(unique, backup.id, "tiny")
        assert refused.value.status == 409
        api.restore_backup(unique, backup.id, "copy")
    assert checksums(platform.home / "volumes" / unique / "copy") == checksums(seeded)


def test_a_changed_archive_is_never_restored(platform: Daemon, unique: str, seeded: Path) -> None:
    with platform.operator() as api:
        backup = api.create_backup(unique, "data")
    archive = platform.home / "backups" / unique / f"{backup.id}.tar"
    with archive.open("r+b") as stream:  # one byte of the data flipped at rest
        stream.seek(archive.stat().st_size // 2)
        byte = stream.read(1)
        stream.seek(-1, 1)
        stream.write(bytes([byte[0] ^ 0xFF]))
    before = checksums(seeded)
    with platform.operator() as api, pytest.raises(ApiError, match="archive changed since it was verified"):
        api.restore_backup(unique, backup.id)
    assert checksums(seeded) == before  # nothing was touched


def test_the_cli_takes_lists_and_deletes_backups(platform: Daemon, unique: str, seeded: Path) -> None:
    taken = platform.cli("backups", "create", f"{unique}/data")
    assert taken.returncode == 0 and "verified" in taken.stdout, taken.stdout + taken.stderr
    backup_id = taken.stdout.split()[1]
    listed = platform.cli("backups", "list", unique)
    assert backup_id in listed.stdout and f"{unique}/data" in listed.stdout and "verified" in listed.stdout
    assert platform.cli("backups", "delete", backup_id, "--yes").returncode == 0
    assert not (platform.home / "backups" / unique / f"{backup_id}.tar").exists()
    missing = platform.cli("backups", "create", f"{unique}/nope")
    assert missing.returncode == 1 and "no volume named 'nope'" in missing.stderr
