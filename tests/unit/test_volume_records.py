"""Volumes' and backups' rules on a real (migrated) SQLite database: the plan's storage, one writer, the
schedule and the keep of backups, and what a failed or running backup may not do."""

import asyncio
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from hosting.paas.backup_store import LocalStore, StoreError
from hosting.paas.backups import BackupError, VolumeBackups, parse_sums, read_manifest
from hosting.paas.fake_runtime import FakeRuntime
from hosting.paas.node_volumes import NodeVolumes
from hosting.paas.nodes import NodeHandle, NodePool
from hosting.paas.volumes import VolumeUsage
from tenants import apps, audit, backups, db, tenancy, volumes
from tenants.enums import BackupState
from tenants.errors import Conflict, Invalid, NotFound, QuotaExceeded, Unavailable
from tenants.models import Backup, utcnow
from tenants.schemas import AppSpec, TenantCreate, VolumeMount


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with db.session(engine) as session:
        tenancy.create_tenant(session, "op", TenantCreate(name="acme"))  # the small plan: 1024 MiB, keeps 3
        yield session


def make_volume(session: Session, name: str = "data", size_mib: int = 64) -> None:
    tenant = volumes.check_create(session, "acme", name, size_mib)
    volumes.record_create(session, "op", tenant, name, size_mib, "local")


def deploy(session: Session, app: str, replicas: int = 1, volume: str = "data") -> None:
    spec = AppSpec(image="strata/hello", replicas=replicas, volumes=[VolumeMount(volume=volume, path="/data")])
    apps.deploy(session, "op", "acme", app, spec, platform_domain="localhost")


def test_storage_past_the_plan_is_refused_with_the_numbers(session: Session) -> None:
    make_volume(session, "a", 1000)
    with pytest.raises(QuotaExceeded, match="needs 100 MiB, the tenant's volumes have 1000 MiB .* allows 1024 MiB"):
        volumes.check_create(session, "acme", "b", 100)
    with pytest.raises(Conflict, match="has a volume named 'a' already"):
        volumes.check_create(session, "acme", "a", 16)


def test_a_volume_has_one_writer_and_its_app_one_instance(session: Session) -> None:
    make_volume(session)
    with pytest.raises(Invalid, match="one instance per volume"):
        deploy(session, "web", replicas=2)
    deploy(session, "web")
    with pytest.raises(Conflict, match="mounted by app 'web'"):
        deploy(session, "other")
    with pytest.raises(Invalid, match="one instance per volume"):
        apps.scale(session, "op", "acme", "web", 2)
    with pytest.raises(NotFound, match="no volume named 'nope'"):
        deploy(session, "third", volume="nope")


def test_deleting_a_mounted_volume_takes_force_and_unmounts_it_in_a_new_revision(session: Session) -> None:
    make_volume(session)
    deploy(session, "web")
    with pytest.raises(Conflict, match="mounted by app 'web'"):
        volumes.delete(session, "op", "acme", "data", force=False)
    volumes.delete(session, "op", "acme", "data", force=True)
    app = apps.get_app(session, tenancy.get_tenant(session, "acme"), "web")
    assert app.volumes == [] and app.revision == 2


def backup(session: Session, state: BackupState, hours_ago: float = 0, volume: str = "data") -> int:
    row = backups.start(session, "op", "acme", volume)
    row.started_at = utcnow() - timedelta(hours=hours_ago)
    session.commit()
    if state != BackupState.RUNNING:
        backups.finish(session, row.id or 0, failure="broken" if state == BackupState.FAILED else None)
    return row.id or 0


def test_a_volume_is_due_once_its_plans_interval_passed_since_its_latest_backup(session: Session) -> None:
    make_volume(session)
    assert backups.due(session, utcnow()) == [("acme", "data")]  # never backed up
    backup(session, BackupState.VERIFIED, hours_ago=23)
    assert backups.due(session, utcnow()) == []
    assert backups.due(session, utcnow() + timedelta(hours=1)) == [("acme", "data")]
    volumes.get_volume(session, tenancy.get_tenant(session, "acme"), "data").node = "vm1"
    session.commit()
    assert backups.due(session, utcnow() + timedelta(hours=1)) == [("acme", "data")]  # a VM node's too


def test_the_keep_counts_verified_backups_and_drops_failed_ones_older_than_the_newest(session: Session) -> None:
    make_volume(session)
    ids = [backup(session, state) for state in [BackupState.VERIFIED] * 4 + [BackupState.FAILED]]
    newest = backup(session, BackupState.VERIFIED)
    surplus = sorted(b.id or 0 for b, _ in backups.surplus(session))
    assert surplus == [ids[0], ids[1], ids[4]]  # small keeps 3: newest, ids[3], ids[2]
    assert newest not in surplus


def test_only_a_verified_backup_restores_and_a_running_one_is_not_deleted(session: Session) -> None:
    make_volume(session)
    acme = tenancy.get_tenant(session, "acme")
    failed, running = backup(session, BackupState.FAILED), backup(session, BackupState.RUNNING)
    with pytest.raises(Conflict, match="is failed: broken; only a verified backup is restored"):
        backups.restorable(session, acme, failed, None)
    with pytest.raises(Conflict, match="is running"):
        backups.mark_deleting(session, "op", acme, running)
    assert backups.recover(session) == ([(running, "acme")], [])
    assert session.get(Backup, running).state == BackupState.FAILED  # type: ignore[union-attr]


class DirVolumes(NodeVolumes):
    """Volumes as plain directories of 64 MiB: what a backup copies, without loop mounts."""

    def ensure_mounted(self, tenant: str, name: str) -> Path:
        path = self.path(tenant, name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def usage(self, tenant: str, name: str) -> VolumeUsage:
        return VolumeUsage(size_bytes=64 << 20, used_bytes=4096)


def test_a_backup_whose_read_back_fails_is_failed_with_the_reason_and_leaves_no_archive(
    engine: Engine, session: Session, tmp_path: Path
) -> None:
    make_volume(session)
    runtime = FakeRuntime("local")  # its scratch containers run nothing: the read back fails
    pool = NodePool([NodeHandle(runtime, "local", "fake://")])
    store = DirVolumes(tmp_path / "volumes", engine, pool, "platform")
    (store.ensure_mounted("acme", "data") / "file").write_text("data")
    backups_ = VolumeBackups(engine, pool, store, tmp_path / "backups")
    done = asyncio.run(backups_.create("op", "acme", "data"))  # the host has the room: its archive is tiny
    assert done.state == BackupState.FAILED and "the fake engine runs no commands" in (done.message or "")
    assert not list((tmp_path / "backups").rglob("*.tar")) and not list((tmp_path / "backups").rglob("*.json"))
    [event] = [e for e in audit.list_events(session) if e.action == "backup.create"]
    assert event.detail["state"] == "failed" and "reason" in event.detail


def test_a_sparse_file_past_the_volumes_size_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """`truncate -s 16T` in a 16 MiB volume: archived as stored (holes and all), never hashed as 16 TiB."""
    source, archive = tmp_path / "volume", tmp_path / "backup.tar"
    source.mkdir()
    with (source / "holes").open("wb") as sparse:
        sparse.truncate(1 << 40)
    subprocess.run(["tar", "--sparse", "-cf", str(archive), "-C", str(source), "."], check=True)
    assert archive.stat().st_size < 1 << 20
    with pytest.raises(BackupError, match="add up to over 16 MiB, the volume's size .* holes is one"):
        read_manifest(archive, 16 << 20)


class FlakyStore(LocalStore):
    """A store whose deletions fail while `down`."""

    down = True

    def delete(self, tenant: str, backup_id: int) -> None:
        if self.down:
            raise StoreError("s3://bucket/acme/1.tar: connection refused", public="the backup store could not delete")
        super().delete(tenant, backup_id)


def test_a_backup_whose_archive_the_store_keeps_stays_deleting_until_the_schedule_removes_it(
    engine: Engine, session: Session, tmp_path: Path
) -> None:
    make_volume(session)
    acme = tenancy.get_tenant(session, "acme")
    kept = backup(session, BackupState.VERIFIED)
    runtime = FakeRuntime("local")
    pool = NodePool([NodeHandle(runtime, "local", "fake://")])
    store = FlakyStore(tmp_path / "store")
    backups_ = VolumeBackups(engine, pool, DirVolumes(tmp_path / "volumes", engine, pool, "platform"), tmp_path, store)
    with pytest.raises(Unavailable, match=f"backup {kept} is marked deleting, but the backup store could not delete"):
        asyncio.run(backups_.delete("op", "acme", kept))
    session.expire_all()
    assert backups.get_backup(session, acme, kept).state == BackupState.DELETING
    with pytest.raises(Conflict, match="is deleting; only a verified backup is restored"):
        backups.restorable(session, acme, kept, None)
    asyncio.run(backups_.run_schedule(utcnow()))  # still down: kept, and tried again next time
    session.expire_all()
    assert backups.get_backup(session, acme, kept).state == BackupState.DELETING
    store.down = False
    asyncio.run(backups_.run_schedule(utcnow()))
    session.expire_all()
    with pytest.raises(NotFound):
        backups.get_backup(session, acme, kept)
    assert [e.action for e in audit.list_events(session) if e.action == "backup.delete"] == ["backup.delete"]


def test_sums_read_back_as_gnu_or_busybox_write_them() -> None:
    """A guest's GNU sha256sum escapes a name with a backslash or a line break; busybox's writes it as it is."""
    gnu = b"\\" + b"a" * 64 + b"  ./a\\\\b\\nc\n" + b"b" * 64 + b"  ./plain\n"
    busybox = b"c" * 64 + b"  ./a\\b\n"
    assert parse_sums(gnu) == {"a\\b\nc": "a" * 64, "plain": "b" * 64}
    assert parse_sums(busybox) == {"a\\b": "c" * 64}
