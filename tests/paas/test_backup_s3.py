"""Backups kept in an S3-compatible store: moto's server on 127.0.0.1 stands for it, a platform of its own is
configured with it (`STRATA_BACKUP_S3_*`, credentials as AWS_* variables), and real volumes of running apps
are backed up into its bucket and restored from it."""

import hashlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from mypy_boto3_s3 import S3Client

from tenants.client import ApiError
from tenants.enums import BackupState
from tests.containers import ready, running_platform, wait_for
from tests.harness import Daemon, free_port
from tests.paas.test_backups import checksums, exec_in, seed

BUCKET, PREFIX = "strata-backups", "site-a"
SECRET = "s3cr3t-never-shown"  # the secret key the platform is given: no log line, no message may hold it
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "strata-test", "AWS_SECRET_ACCESS_KEY": SECRET}
STORE_START_SECONDS = 15


class MotoStore:
    """moto's S3 server as a process of its own on 127.0.0.1: stopped, it is a store out of reach (its port
    refuses), and started again, an empty one with the bucket made anew."""

    def __init__(self, log: Path) -> None:
        self.port, self.log = free_port(), log
        self.process: subprocess.Popen[bytes] | None = None
        self.client: S3Client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=SECRET,
            config=Config(retries={"max_attempts": 1}),
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
            self.process = subprocess.Popen(command, stdout=out, stderr=out)
        deadline = time.monotonic() + STORE_START_SECONDS
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert self.process.poll() is None and time.monotonic() < deadline, f"moto did not start: {self.log}"
                time.sleep(0.1)
        self.client.create_bucket(Bucket=BUCKET)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def keys(self, tenant: str) -> dict[str, dict]:
        """The objects under the tenant's prefix, by key."""
        listed = self.client.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{tenant}/")
        return {item["Key"]: dict(item) for item in listed.get("Contents", [])}

    def keys_under(self, prefix: str) -> set[str]:
        return {item["Key"] for item in self.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])}

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=data)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoStore]:
    running = MotoStore(tmp_path_factory.mktemp("moto") / "moto.log")
    running.start()
    yield running
    running.stop()


def settings(home: Path, store: MotoStore, prefix: str) -> dict[str, str]:
    """A platform's settings to keep its backups under `prefix` in the bucket; the machine's AWS settings unread."""
    return {
        "STRATA_BACKUP_S3_URL": f"s3://{BUCKET}/{prefix}/",
        "STRATA_BACKUP_S3_ENDPOINT": store.endpoint,
        "STRATA_BACKUP_S3_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home.parent / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home.parent / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        **CREDENTIALS,
    }


@pytest.fixture(scope="module")
def s3_platform(tmp_path_factory: pytest.TempPathFactory, store: MotoStore) -> Iterator[Daemon]:
    """A platform that keeps its backups in the bucket; the AWS settings of the machine are not read."""
    home = tmp_path_factory.mktemp("s3") / "home"
    with running_platform(home, env=settings(home, store, PREFIX)) as daemon:
        yield daemon
    log = home.parent / f"{home.name}-daemon.log"
    assert "backups are kept in s3://strata-backups/site-a at http://127.0.0.1:" in log.read_text()
    assert SECRET not in log.read_text()


@pytest.fixture
def seeded(s3_platform: Daemon, unique: str) -> Iterator[Path]:
    """`unique`'s volume as `tests.paas.test_backups.seed` fills it; the tenant deleted after (and with it, its
    backups in the bucket)."""
    yield seed(s3_platform, unique)
    with s3_platform.operator() as api:
        if unique in {tenant.name for tenant in api.tenants()}:
            api.delete_tenant(unique)


def local_files(daemon: Daemon, tenant: str) -> list[Path]:
    """What the platform keeps of the tenant's backups on its own disk, scratch copies included."""
    root = daemon.home / "backups"
    return [*(root / tenant).glob("*"), *(root / ".scratch").glob("*")]


def test_a_backup_goes_to_the_bucket_verified_and_restores_from_it(
    s3_platform: Daemon, store: MotoStore, unique: str, seeded: Path
) -> None:
    before = checksums(seeded)
    with s3_platform.operator() as api:
        backup = api.create_backup(unique, "data")
    assert backup.state == BackupState.VERIFIED, backup.message
    archive, manifest = f"{PREFIX}/{unique}/{backup.id}.tar", f"{PREFIX}/{unique}/{backup.id}.json"
    objects = store.keys(unique)
    assert objects.keys() == {archive, manifest}
    assert "-" in objects[archive]["ETag"]  # ~21 MB: uploaded in parts
    assert hashlib.sha256(store.read(archive)).hexdigest() == backup.archive_sha256
    assert json.loads(store.read(manifest))["archive_sha256"] == backup.archive_sha256
    assert local_files(s3_platform, unique) == []  # the host keeps no copy

    [instance] = ready(s3_platform, unique, "web", 1)
    exec_in(instance.container_id, "rm -r /data/dir && echo changed > /data/secret && echo new > /data/extra")
    assert checksums(seeded) != before
    with s3_platform.operator() as api:
        api.restore_backup(unique, backup.id)
    assert checksums(seeded) == before
    assert local_files(s3_platform, unique) == []  # the fetched copy went after the restore
    [again] = ready(s3_platform, unique, "web", 1)
    assert exec_in(again.container_id, "cat /data/dir/a") == "hello\n"


def test_an_object_changed_in_the_bucket_is_never_restored(
    s3_platform: Daemon, store: MotoStore, unique: str, seeded: Path
) -> None:
    with s3_platform.operator() as api:
        backup = api.create_backup(unique, "data")
    archive, manifest = f"{PREFIX}/{unique}/{backup.id}.tar", f"{PREFIX}/{unique}/{backup.id}.json"
    original = store.read(archive)
    middle = len(original) // 2
    store.write(archive, original[:middle] + bytes([original[middle] ^ 0xFF]) + original[middle + 1 :])
    before = checksums(seeded)
    [instance] = ready(s3_platform, unique, "web", 1)
    with s3_platform.operator() as api, pytest.raises(ApiError, match="archive changed since it was verified") as e:
        api.restore_backup(unique, backup.id)
    assert e.value.status == 409
    assert checksums(seeded) == before  # nothing was touched
    assert [i.id for i in ready(s3_platform, unique, "web", 1)] == [instance.id]  # its app was not even stopped

    # the archive and its manifest changed together: the backup's record still tells them apart
    forged = json.loads(store.read(manifest)) | {"archive_sha256": hashlib.sha256(store.read(archive)).hexdigest()}
    store.write(manifest, json.dumps(forged).encode())
    with s3_platform.operator() as api, pytest.raises(ApiError, match="manifest changed since it was verified"):
        api.restore_backup(unique, backup.id)
    assert checksums(seeded) == before
    assert [i.id for i in ready(s3_platform, unique, "web", 1)] == [instance.id]  # its app was not even stopped
    assert local_files(s3_platform, unique) == []


def test_a_store_out_of_reach_fails_the_backup_with_the_reason(
    s3_platform: Daemon, store: MotoStore, unique: str, seeded: Path
) -> None:
    with s3_platform.operator() as api:
        verified = api.create_backup(unique, "data")
    [instance] = ready(s3_platform, unique, "web", 1)
    store.stop()
    try:
        with s3_platform.operator() as api:
            failed = api.create_backup(unique, "data")
            listed = {b.id: b for b in api.backups(unique)}
            with pytest.raises(ApiError, match="the backup store could not hand the archive back") as refused:
                api.restore_backup(unique, verified.id)
            with pytest.raises(ApiError, match=f"backup {verified.id} is marked deleting, but the backup") as kept:
                api.delete_backup(unique, verified.id)
            deleting = {b.id: b for b in api.backups(unique)}[verified.id]
    finally:
        store.start()
    # what the tenant is told names no bucket nor endpoint; the operator's log says where and why
    assert failed.state == BackupState.FAILED and failed.message is not None
    assert failed.message == "the backup store could not keep the archive; an operator finds why in the daemon's log"
    assert listed[failed.id].state == BackupState.FAILED and listed[failed.id].message == failed.message
    assert "s3://" not in refused.value.message + kept.value.message
    log = (s3_platform.home.parent / f"{s3_platform.home.name}-daemon.log").read_text()
    assert "it could not be stored in s3://strata-backups/site-a at http://127.0.0.1:" in log
    assert "Could not connect to the endpoint URL" in log and SECRET not in log
    assert refused.value.status == 503 and kept.value.status == 503
    # the deleted backup stays, `deleting` and restored no more, until the store takes its deletion
    assert deleting.state == BackupState.DELETING  # (moto's server keeps nothing across its restart)
    with s3_platform.operator() as api, pytest.raises(ApiError, match="is deleting; only a verified backup"):
        api.restore_backup(unique, verified.id)
    with s3_platform.operator() as api:
        api.delete_backup(unique, verified.id)  # again, the store back: gone, row and objects
        assert verified.id not in {b.id for b in api.backups(unique)}
    assert store.keys(unique) == {}
    assert local_files(s3_platform, unique) == []  # the failed one left nothing behind
    assert [i.id for i in ready(s3_platform, unique, "web", 1)] == [instance.id]  # not stopped for a restore


def test_deleting_backups_deletes_their_objects(
    s3_platform: Daemon, store: MotoStore, unique: str, seeded: Path
) -> None:
    with s3_platform.operator() as api:
        first, second = api.create_backup(unique, "data"), api.create_backup(unique, "data")
        assert len(store.keys(unique)) == 4
        api.delete_backup(unique, first.id)
        assert store.keys(unique).keys() == {
            f"{PREFIX}/{unique}/{second.id}.tar",
            f"{PREFIX}/{unique}/{second.id}.json",
        }
        api.delete_tenant(unique)  # its backups go with it
        assert store.keys(unique) == {}


def test_backups_kept_in_an_earlier_store_restore_and_delete_from_there(
    store: MotoStore, tmp_path: Path, unique: str
) -> None:
    """The operator moves the platform's backups to another prefix (or bucket, or store): each backup's row says
    where it is, so those taken before still restore from there, and their deletion deletes them there."""
    home = tmp_path / "home"
    with running_platform(home, env=settings(home, store, "before")) as daemon:
        seeded = seed(daemon, unique)
        before = checksums(seeded)
        with daemon.operator() as api:
            earlier = api.create_backup(unique, "data")
        assert earlier.state == BackupState.VERIFIED, earlier.message
        [gone] = ready(daemon, unique, "web", 1)
    assert store.keys_under("before/") == {f"before/{unique}/{earlier.id}.tar", f"before/{unique}/{earlier.id}.json"}
    with running_platform(home, env=settings(home, store, "after")) as daemon:
        [instance] = wait_for(
            lambda: [i for i in ready(daemon, unique, "web", 1) if i.container_id != gone.container_id],
            what="its app in a container of the new daemon",
        )
        exec_in(instance.container_id, "echo changed > /data/secret")
        with daemon.operator() as api:
            api.restore_backup(unique, earlier.id)
            assert checksums(seeded) == before
            later = api.create_backup(unique, "data")
            assert later.state == BackupState.VERIFIED, later.message
            api.delete_backup(unique, earlier.id)
        assert store.keys_under("before/") == set()  # deleted where it was
        assert store.keys_under("after/") == {f"after/{unique}/{later.id}.tar", f"after/{unique}/{later.id}.json"}
        with daemon.operator() as api:
            api.delete_tenant(unique)
        assert store.keys_under("after/") == set()
