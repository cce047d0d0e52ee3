"""Where verified backups rest: a directory of this host (the default) or an S3-compatible store
(`hosting.paas.backup_s3`). A backup is always taken, and verified, as a local archive with its manifest beside
it (`<id>.tar`, `<id>.json`); the store is handed the pair only once it is verified, and hands it back as local
files for a restore. It keeps both as they were given and judges neither: the restore checks the archive's
checksum against the backup's record before it touches anything.
"""

import json
import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path

HOST_RESERVE = 1 << 30  # free space a backup or a restore's copy leaves the host beside it


class StoreError(Exception):
    """The store could not keep, hand back or delete an archive. The message says why, for the operator's log:
    it may name the bucket and the endpoint; `public` says what failed without them, for the API (a tenant's
    backup says it)."""

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public or message


@dataclass(frozen=True)
class S3Location:
    """A bucket of an S3-compatible store and the prefix of the keys there (`s3://BUCKET/PREFIX`). No credential
    ever sits here: boto3 finds them the standard way (AWS_ACCESS_KEY_ID..., ~/.aws/credentials, a role)."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None  # MinIO, Ceph, ...; None: AWS's own
    region: str | None = None  # None: boto3's own choice (AWS_DEFAULT_REGION, ~/.aws/config)

    def key(self, *parts: str) -> str:
        return "/".join(part for part in (self.prefix, *parts) if part)

    def url(self, *parts: str) -> str:
        """`s3://BUCKET/PREFIX/PARTS...`, the way an operator names an object to `aws s3`."""
        return f"s3://{self.bucket}/{self.key(*parts)}".rstrip("/")

    def __str__(self) -> str:
        return self.url() + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    def record(self) -> str:
        """The location as a backup's row keeps it (JSON): where its pair is, whatever the store is later."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def recorded(cls, record: str) -> "S3Location":
        return cls(**json.loads(record))


class ArchiveStore(ABC):
    """Keeps the archives of verified backups, by tenant and backup id. Every method blocks (run them in a
    thread) and raises `StoreError` with the reason when the store fails it; none leaves a backup half-kept.

    - `keep` takes the verified archive and its manifest (`archive.with_suffix(".json")`): when it returns, the
      store holds both, exactly as they were; the local files are the store's to keep or remove.
    - `fetch` puts the archive with its manifest beside it where a restore reads them, and returns the
      archive's path: the archive as kept, or under `scratch` (a directory the caller removes after).
    - `delete` removes one backup's pair, `forget_tenant` every pair of a tenant; what is gone already is fine.
    - `record` says where the pairs are, as a backup's row keeps it: None for this host.
    """

    record: str | None = None

    @abstractmethod
    def keep(self, tenant: str, backup_id: int, archive: Path) -> None: ...

    @abstractmethod
    def fetch(self, tenant: str, backup_id: int, scratch: Path) -> Path: ...

    @abstractmethod
    def delete(self, tenant: str, backup_id: int) -> None: ...

    @abstractmethod
    def forget_tenant(self, tenant: str) -> None: ...

    @abstractmethod
    def describe(self, tenant: str, backup_id: int) -> str:
        """Where the backup's pair is kept, in words for a message (never a secret)."""


class LocalStore(ArchiveStore):
    """Archives under `root/<tenant>/<id>.tar`, each with its manifest `<id>.json`: where backups are taken, so
    keeping one moves nothing."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, tenant: str, backup_id: int) -> Path:
        return self.root / tenant / f"{backup_id}.tar"

    def keep(self, tenant: str, backup_id: int, archive: Path) -> None:
        kept = self.path(tenant, backup_id)
        if archive != kept:
            kept.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.replace(archive.with_suffix(".json"), kept.with_suffix(".json"))
            os.replace(archive, kept)

    def fetch(self, tenant: str, backup_id: int, scratch: Path) -> Path:
        return self.path(tenant, backup_id)  # read where it is: one missing fails the restore's first read

    def delete(self, tenant: str, backup_id: int) -> None:
        kept = self.path(tenant, backup_id)
        kept.unlink(missing_ok=True)
        kept.with_suffix(".json").unlink(missing_ok=True)

    def forget_tenant(self, tenant: str) -> None:
        shutil.rmtree(self.root / tenant, ignore_errors=True)

    def describe(self, tenant: str, backup_id: int) -> str:
        return str(self.path(tenant, backup_id))


def check_room(directory: Path, needed: int, what: str) -> None:
    """`StoreError` unless the file system of `directory` has `needed` bytes free and `HOST_RESERVE` to spare."""
    host = os.statvfs(directory)
    free = host.f_bavail * host.f_frsize
    if free < needed + HOST_RESERVE:
        raise StoreError(
            f"the host has {free // 2**20} MiB free, {what} needs {needed // 2**20} MiB and leaves "
            f"{HOST_RESERVE // 2**20} MiB to the host"
        )
