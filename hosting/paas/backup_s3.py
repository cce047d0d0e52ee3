"""Backups kept in an S3-compatible store (AWS S3, MinIO, Ceph's RGW, ...) through boto3: each backup is two
objects, `PREFIX/<tenant>/<id>.tar` and `PREFIX/<tenant>/<id>.json`. Archives go up and come down with boto3's
managed transfer (multipart, in parallel parts, past `MULTIPART_THRESHOLD`); the manifest goes up after its
archive, so a pair whose manifest is there is whole. boto3 finds the credentials itself (the AWS_* variables,
the shared files, an instance role): none passes through Strata, none is ever logged or shown.
"""

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from hosting.paas.backup_store import ArchiveStore, S3Location, StoreError, check_room

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 120.0
ATTEMPTS = 3  # per request, connection errors and throttling included (botocore's `standard` retries)
MULTIPART_THRESHOLD = 16 << 20  # an archive past this goes up, and comes down, in parts
PART_BYTES = 16 << 20  # boto3 makes the parts bigger where 10,000 of them would not hold the archive
TRANSFER_THREADS = 4  # parts in flight at once
DELETE_BATCH = 1000  # S3's most keys per DeleteObjects
STORE_ERRORS = (BotoCoreError, ClientError, Boto3Error)


class S3Store(ArchiveStore):
    """Backups' pairs as objects under `location`. `keep` uploads and, once both are up, removes the local
    files; `fetch` downloads into the restore's scratch directory, after checking the host has room."""

    def __init__(self, location: S3Location) -> None:
        self.location, self.record = location, location.record()
        self.client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=location.endpoint_url,
            region_name=location.region,
            config=Config(
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                read_timeout=READ_TIMEOUT_SECONDS,
                retries={"max_attempts": ATTEMPTS, "mode": "standard"},
            ),
        )
        self.transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=PART_BYTES,
            max_concurrency=TRANSFER_THREADS,
            preferred_transfer_client="classic",
        )

    def keep(self, tenant: str, backup_id: int, archive: Path) -> None:
        manifest = archive.with_suffix(".json")
        try:
            self.client.upload_file(
                str(archive), self.location.bucket, self._key(tenant, backup_id), Config=self.transfer
            )
            self.client.upload_file(str(manifest), self.location.bucket, self._key(tenant, backup_id, ".json"))
        except STORE_ERRORS as exc:
            public = _public("keep the archive")
            raise StoreError(f"it could not be stored in {self.location}: {_reason(exc)}", public) from exc
        archive.unlink(missing_ok=True)
        manifest.unlink(missing_ok=True)

    def fetch(self, tenant: str, backup_id: int, scratch: Path) -> Path:
        archive = scratch / f"{backup_id}.tar"
        key = self._key(tenant, backup_id)
        try:
            size = self.client.head_object(Bucket=self.location.bucket, Key=key)["ContentLength"]
            check_room(scratch, size, f"a copy of its archive from {self.location.url()}")
            self.client.download_file(self.location.bucket, key, str(archive), Config=self.transfer)
            self.client.download_file(
                self.location.bucket, self._key(tenant, backup_id, ".json"), str(archive.with_suffix(".json"))
            )
        except STORE_ERRORS as exc:
            raise StoreError(
                f"it could not be fetched from {self.location}: {_reason(exc)}", _public("hand the archive back")
            ) from exc
        return archive

    def delete(self, tenant: str, backup_id: int) -> None:
        self._delete([self._key(tenant, backup_id), self._key(tenant, backup_id, ".json")])

    def forget_tenant(self, tenant: str) -> None:
        keys: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=self.location.key(tenant) + "/"
            )
            keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        except STORE_ERRORS as exc:
            public = _public("list the archives")
            raise StoreError(
                f"the backups of {tenant} in {self.location} could not be listed: {_reason(exc)}", public
            ) from exc
        self._delete(keys)

    def describe(self, tenant: str, backup_id: int) -> str:
        return self.location.url(tenant, f"{backup_id}.tar")

    def _delete(self, keys: list[str]) -> None:
        """Delete the objects; `StoreError` naming those left if the store kept any."""
        left: list[str] = []
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            try:
                answer = self.client.delete_objects(
                    Bucket=self.location.bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
                )
            except STORE_ERRORS as exc:
                reason, public = _reason(exc), _public("delete the archive")
                raise StoreError(
                    f"{len(keys) - start} object(s) not deleted from {self.location}: {reason}", public
                ) from exc
            left += [f"{error.get('Key')} ({error.get('Code')})" for error in answer.get("Errors", [])]
        if left:
            raise StoreError(
                f"{len(left)} object(s) not deleted from {self.location}, e.g. {left[0]}", _public("delete the archive")
            )

    def _key(self, tenant: str, backup_id: int, suffix: str = ".tar") -> str:
        return self.location.key(tenant, f"{backup_id}{suffix}")


def _public(verb: str) -> str:
    """What the API says of a store's failure: nothing of where the store is (an operator's log says)."""
    return f"the backup store could not {verb}; an operator finds why in the daemon's log"


def _reason(exc: Exception) -> str:
    """What the store said, in one line; S3's own code where it gave one (NoSuchBucket, AccessDenied, ...)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", "")
        if code in ("404", "NoSuchKey"):
            return "no such object (deleted from the store?)"
        return f"{code}{f': {message}' if message and message != code else ''}"
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, Boto3Error) and isinstance(cause, ClientError | BotoCoreError):
        return _reason(cause)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
