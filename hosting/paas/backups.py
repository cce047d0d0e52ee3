"""Backups of volumes, and their restores. A backup is a tar archive of the volume's files, taken while the
containers of the app that mounts it are paused (the cgroup freezer: nothing writes mid-copy), then verified
before it counts: extracted into a scratch directory, read back by a scratch container (no network, no
capabilities, as nobody), and every file's SHA-256 compared with the manifest read from the archive. A
failed step fails the backup, with the reason; it is never shown as a success.

Archives live under `root/<tenant>/<id>.tar`, each with its manifest `<id>.json` (every file's checksum and
the archive's own). GNU tar writes and extracts them: it keeps numeric owners, modes and links as they were,
and refuses members that would land outside the directory it extracts into.
"""

import asyncio
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO, TypeVar

from sqlalchemy import Engine
from sqlmodel import Session

from hosting.paas.nodes import NodePool
from hosting.paas.runtime import EngineError, Mount, NodeRuntime
from hosting.paas.volumes import LocalVolumes, VolumeError
from tenants import apps, backups, db, volumes
from tenants.errors import Conflict, DomainError
from tenants.instances import instances_of
from tenants.models import Backup, saved_id, utcnow
from tenants.schemas import BackupRead, VolumeRead
from tenants.tenancy import get_tenant

log = logging.getLogger(__name__)
T = TypeVar("T")

SCRATCH_IMAGE = "strata/static"  # busybox: find and sha256sum, on every platform's host (`images bootstrap`)
NOBODY = 65534
CHUNK = 1 << 20
KEPT_OUT = ("lost+found",)  # ext4's own, in every volume
SCHEDULE = "schedule"  # the actor of scheduled backups and of the removal of those past their keep
SCHEDULE_CHECK_SECONDS = 600.0  # how often the schedule is looked at: a backup is due within this of its time


class BackupError(Exception):
    """A step of a backup or restore failed; the message says which, in words fit for the API."""


@dataclass(frozen=True)
class Manifest:
    files: dict[str, str]  # path in the volume -> SHA-256 of its content
    size_bytes: int
    archive_sha256: str


class VolumeBackups:
    """Backs up, verifies, restores and removes the volumes' archives on this host. The rows are `tenants`';
    the local node's engine runs the scratch containers and pauses the apps."""

    def __init__(self, engine: Engine, pool: NodePool, volumes: LocalVolumes, root: Path, node: str = "local"):
        self.engine, self.pool, self.volumes, self.root, self.node = engine, pool, volumes, root, node
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}  # one backup or restore of a volume at a time

    async def create(self, actor: str, tenant: str, volume: str) -> BackupRead:
        """Back the volume up and verify it; the row says verified or failed (with why) when this returns."""
        async with self._lock(tenant, volume):
            backup = await self._db(lambda s: backups.start(s, actor, tenant, volume))
            backup_id = saved_id(backup)
            archive = self._archive(tenant, backup_id)
            try:
                source = await asyncio.to_thread(self.volumes.ensure_mounted, tenant, volume)
                archive.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                async with self._paused(tenant, volume):
                    await asyncio.to_thread(_tar, "-cf", str(archive), "-C", str(source), *_excluded(), ".")
                manifest = await asyncio.to_thread(read_manifest, archive)
                _manifest_path(archive).write_text(json.dumps(asdict(manifest)))
                await self._verify(archive, manifest, backup_id)
            except (BackupError, EngineError, VolumeError, OSError) as exc:
                log.warning("backup %d of %s/%s failed: %s", backup_id, tenant, volume, exc)
                _remove_archive(archive)
                reason = str(exc)
                done = await self._db(lambda s: backups.finish(s, backup_id, failure=reason))
            else:
                done = await self._db(
                    lambda s: backups.finish(
                        s,
                        backup_id,
                        files=len(manifest.files),
                        size_bytes=manifest.size_bytes,
                        sha256=manifest.archive_sha256,
                    )  # fmt: skip
                )
            return backups.read([(done, tenant)])[0]

    async def restore(self, actor: str, tenant: str, backup_id: int, into: str | None) -> VolumeRead:
        """Replace the contents of the tenant's volume `into` (the backup's own by default) with the verified
        backup, its app paused meanwhile and restarted after (a new revision: it starts on the restored data).
        The archive's checksum is checked first and every restored file's after; `Conflict` says what failed."""
        backup, target = await self._db(lambda s: backups.restorable(s, get_tenant(s, tenant), backup_id, into))
        archive = self._archive(tenant, backup_id)
        async with self._lock(tenant, target.name):
            try:
                manifest = Manifest(**json.loads(_manifest_path(archive).read_text()))
                if await asyncio.to_thread(_sha256_file, archive) != manifest.archive_sha256:
                    raise BackupError(f"backup {backup_id}'s archive changed since it was verified: not restored")
                mount = await asyncio.to_thread(self.volumes.ensure_mounted, tenant, target.name)
                async with self._paused(tenant, target.name):
                    await asyncio.to_thread(_replace_contents, archive, mount)
                    mismatch = compare(manifest, await asyncio.to_thread(tree_sums, mount))
                if mismatch:
                    raise BackupError(f"the restored files differ from the backup: {mismatch}")
            except (BackupError, OSError, VolumeError, EngineError) as exc:
                raise Conflict(f"restoring backup {backup_id} into {target.name} failed: {exc}") from exc
        await self._db(lambda s: self._after_restore(s, actor, tenant, backup, target.name))
        used = (await asyncio.to_thread(self.volumes.usage, tenant, target.name)).used_bytes / 2**20
        return await self._db(lambda s: volumes.read_volume(s, target, tenant, used))

    def remove(self, tenant: str, backup_id: int) -> None:
        """Delete a backup's archive and manifest (its row is gone); one gone already is fine."""
        _remove_archive(self._archive(tenant, backup_id))

    async def run(self, stopping: asyncio.Event) -> None:
        """Every few minutes, until `stopping`: back up what is due, remove what is past its keep."""
        while True:
            try:
                await asyncio.wait_for(stopping.wait(), SCHEDULE_CHECK_SECONDS)
                return
            except TimeoutError:
                pass
            try:
                await self.run_schedule(utcnow())
            except Exception:  # the loop outlives any one failure: the next look tries again
                log.exception("backup schedule")

    async def run_schedule(self, now: datetime) -> None:
        """Back up every volume that is due on its plan's schedule, then remove the backups past its keep."""
        for tenant, volume in await self._db(lambda s: backups.due(s, now)):
            try:
                await self.create(SCHEDULE, tenant, volume)
            except DomainError as exc:  # the volume went meanwhile
                log.info("scheduled backup of %s/%s: %s", tenant, volume, exc)
        for backup, tenant in await self._db(backups.surplus):
            await self._db(partial(_delete_row, tenant=tenant, backup_id=saved_id(backup)))
            self.remove(tenant, saved_id(backup))

    async def _verify(self, archive: Path, manifest: Manifest, backup_id: int) -> None:
        """Extract into a scratch directory, read every file back in a scratch container, compare checksums."""
        scratch = self.root / ".scratch" / str(backup_id)
        shutil.rmtree(scratch, ignore_errors=True)
        data, out = scratch / "data", scratch / "out"
        try:
            data.mkdir(parents=True)
            out.mkdir()
            await asyncio.to_thread(_tar, "--numeric-owner", "-xpf", str(archive), "-C", str(data))
            await asyncio.to_thread(_hand_to_nobody, scratch)
            script = "cd /restore && find . -type f -exec sha256sum {} + > /out/sums"
            mounts = (Mount(str(data), "/restore"), Mount(str(out), "/out"))
            code, output = await self._runtime().run_once(SCRATCH_IMAGE, ["/bin/sh", "-c", script], mounts)
            if code != 0:
                raise BackupError(f"the scratch container could not read the backup back: {output.strip()[-300:]}")
            mismatch = compare(manifest, parse_sums((out / "sums").read_text()))
            if mismatch:
                raise BackupError(f"the backup does not restore as it was taken: {mismatch}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _paused(self, tenant: str, volume: str) -> "_Paused":
        return _Paused(self, tenant, volume)

    def _after_restore(self, session: Session, actor: str, tenant: str, backup: Backup, target: str) -> None:
        owner = get_tenant(session, tenant)
        backups.record_restore(session, actor, owner, backup, volumes.get_volume(session, owner, target))
        for app in volumes.mounted_by(session, owner, target):
            apps.restart(session, actor, tenant, app.name)

    def _containers(self, session: Session, tenant: str, volume: str) -> list[tuple[str, str]]:
        """(node, container) of every instance of the app that mounts the volume."""
        users = volumes.mounted_by(session, get_tenant(session, tenant), volume)
        running = instances_of(session, [saved_id(app) for app in users])
        return [(row.node, row.container_id) for rows in running.values() for row in rows]

    def _runtime(self) -> NodeRuntime:
        return self.pool[self.node].runtime

    def _archive(self, tenant: str, backup_id: int) -> Path:
        return self.root / tenant / f"{backup_id}.tar"

    def _lock(self, tenant: str, volume: str) -> asyncio.Lock:
        return self._locks.setdefault((tenant, volume), asyncio.Lock())

    async def _db(self, work: Callable[[Session], T]) -> T:
        def run() -> T:
            with db.session(self.engine) as session:
                return work(session)

        return await asyncio.to_thread(run)


class _Paused:
    """The app's containers frozen for the duration (those that are not running are left as they are), and
    thawed after whatever happens."""

    def __init__(self, backups: VolumeBackups, tenant: str, volume: str) -> None:
        self.backups, self.tenant, self.volume = backups, tenant, volume
        self.frozen: list[tuple[NodeRuntime, str]] = []

    async def __aenter__(self) -> None:
        found = await self.backups._db(lambda s: self.backups._containers(s, self.tenant, self.volume))
        for node, container in found:
            runtime = self.backups.pool[node].runtime
            try:
                await runtime.pause(container)
            except EngineError as exc:  # not running (a crash, a restart): it writes nothing either
                log.info("backup of %s/%s: %s not paused: %s", self.tenant, self.volume, container[:12], exc)
                continue
            self.frozen.append((runtime, container))

    async def __aexit__(self, *_: object) -> None:
        for runtime, container in self.frozen:
            try:
                await runtime.unpause(container)
            except EngineError as exc:
                log.error("backup of %s/%s: %s stays paused: %s", self.tenant, self.volume, container[:12], exc)


def read_manifest(archive: Path) -> Manifest:
    """Every regular file's checksum and the sizes in all, read from the archive itself, and the archive's."""
    files, size = {}, 0
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.isfile():
                stream = tar.extractfile(member)
                assert stream is not None  # a regular file has content
                files[_relative(member.name)] = _sha256(stream)
                size += member.size
            elif member.islnk():  # a second name of a file archived before it
                files[_relative(member.name)] = files[_relative(member.linkname)]
    return Manifest(files, size, _sha256_file(archive))


def tree_sums(root: Path) -> dict[str, str]:
    """Every regular file's checksum under `root` (symlinks not followed), by path relative to it."""
    sums = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            relative = path.relative_to(root).as_posix()
            if path.is_file() and not path.is_symlink() and relative.split("/")[0] not in KEPT_OUT:
                with path.open("rb") as stream:
                    sums[relative] = _sha256(stream)
    return sums


def parse_sums(text: str) -> dict[str, str]:
    """`sha256sum`'s lines (`HASH  ./PATH`) as path -> checksum."""
    sums = {}
    for line in text.splitlines():
        digest, _, path = line.partition("  ")
        sums[_relative(path)] = digest
    return sums


def compare(manifest: Manifest, found: dict[str, str]) -> str | None:
    """None if `found` holds exactly the manifest's files with their checksums, else what differs, in words."""
    missing = sorted(manifest.files.keys() - found.keys())
    extra = sorted(found.keys() - manifest.files.keys())
    changed = sorted(path for path in manifest.files.keys() & found.keys() if manifest.files[path] != found[path])
    for what, paths in (("missing", missing), ("changed", changed), ("not in the backup", extra)):
        if paths:
            return f"{len(paths)} file(s) {what}, e.g. {paths[0]}"
    return None


def _delete_row(session: Session, *, tenant: str, backup_id: int) -> None:
    backups.delete(session, SCHEDULE, get_tenant(session, tenant), backup_id)


def _replace_contents(archive: Path, mount: Path) -> None:
    for entry in mount.iterdir():
        if entry.name in KEPT_OUT:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    _tar("--numeric-owner", "-xpf", str(archive), "-C", str(mount))


def _hand_to_nobody(root: Path) -> None:
    """The scratch copy, readable by the scratch container's user whatever the owners it was taken with."""
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.lchown(Path(directory, name), NOBODY, NOBODY)
        for name in files:
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o400)
        os.chown(directory, NOBODY, NOBODY)
        os.chmod(directory, 0o700)


def _excluded() -> list[str]:
    return [f"--exclude=./{name}" for name in KEPT_OUT]


def _tar(*arguments: str) -> None:
    done = subprocess.run(["tar", *arguments], capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise BackupError(f"tar failed: {done.stderr.strip()[-300:] or f'exit status {done.returncode}'}")


def _sha256(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _sha256_file(path: Path) -> str:
    with path.open("rb") as stream:
        return _sha256(stream)


def _relative(name: str) -> str:
    return name.removeprefix("./").lstrip("/")


def _manifest_path(archive: Path) -> Path:
    return archive.with_suffix(".json")


def _remove_archive(archive: Path) -> None:
    archive.unlink(missing_ok=True)
    _manifest_path(archive).unlink(missing_ok=True)
