"""Backups of volumes, and their restores. A backup is a tar archive of the volume's files, taken while the
containers of the app that mounts it are paused (the cgroup freezer: nothing writes mid-copy), then verified
before it counts: extracted into a scratch directory, read back by a scratch container (no network, no
capabilities, as nobody), and every file's SHA-256 compared with the manifest read from the archive. A
failed step fails the backup, with the reason; it is never shown as a success.

An archive is taken as `root/<tenant>/<id>.tar`, with its manifest `<id>.json` (every file's checksum and the
archive's own); once verified, the pair goes to the store (`hosting.paas.backup_store`): it stays where it is
(the local store), or is uploaded and removed from the host (S3). GNU tar writes and extracts archives: it keeps
numeric owners, modes and links as they were, and refuses members that would land outside the directory it
extracts into.

A volume on a VM node is archived and restored where it lives, in its guest (`NodeVolumes.pinned`: mounted
there, and neither moved nor mounted elsewhere meanwhile): the guest's tar streams the archive into the host's
file over the node's SSH connection, and a restore streams it back and reads the checksums there. Verification
and the store are the host's, as for any volume.

A service's volume is backed up as its database's `pg_dump` instead (`hosting.paas.service_backups`): taken from
the running server, verified by a scratch server, kept and checked against its record as an archive is.
"""

import asyncio
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO, TypeVar

from sqlalchemy import Engine
from sqlmodel import Session

from hosting.paas import service_backups
from hosting.paas.backup_s3 import S3Store
from hosting.paas.backup_store import ArchiveStore, LocalStore, S3Location, StoreError, check_room
from hosting.paas.guest_disks import GuestDisks
from hosting.paas.node_volumes import NodeVolumes, guest_path
from hosting.paas.nodes import NodePool
from hosting.paas.runtime import EngineError, Mount, NodeRuntime
from hosting.paas.service_backups import DumpError
from hosting.paas.volumes import VolumeError, VolumeUsage
from tenants import backups, db, services, volumes
from tenants.enums import BackupKind
from tenants.errors import Conflict, Unavailable
from tenants.instances import instances_of
from tenants.models import Backup, Volume, saved_id, utcnow
from tenants.schemas import BackupRead, VolumeRead
from tenants.tenancy import get_tenant
from tenants.volumes import HOST_NODE

log = logging.getLogger(__name__)
T = TypeVar("T")

SCRATCH_IMAGE = "strata/static"  # busybox: find and sha256sum, on every platform's host (`images bootstrap`)
NOBODY = 65534
CHUNK = 1 << 20
KEPT_OUT = ("lost+found",)  # ext4's own, in every volume
SCHEDULE = "schedule"  # the actor of scheduled backups and of the removal of those past their keep
SCHEDULE_CHECK_SECONDS = 600.0  # how often the schedule is looked at: a backup is due within this of its time
RESTORE_STOP_SECONDS, RESTORE_POLL_SECONDS = 120.0, 0.2  # for the instances of a restored volume's apps to go
GNU_ESCAPES = {"\\": "\\", "n": "\n", "r": "\r"}  # what GNU sha256sum escapes in a name
SCRATCH = ".scratch"  # under the root: where backups are read back, and fetched archives wait for a restore


class BackupError(Exception):
    """A step of a backup or restore failed; the message says which, in words fit for the API."""


@dataclass(frozen=True)
class Manifest:
    files: dict[str, str]  # path in the volume -> SHA-256 of its content
    size_bytes: int
    archive_sha256: str


class VolumeBackups:
    """Backs up, verifies, restores and removes the volumes' archives on this host, kept in `store` (under
    `root` by default), whichever node each volume lives on. The rows are `tenants`'; the host's engine runs the
    scratch containers, and each app's node pauses it. `paused` holds the containers paused for a copy: the
    reconciler does not judge their health meanwhile (a frozen app answers no check)."""

    def __init__(
        self, engine: Engine, pool: NodePool, volumes: NodeVolumes, root: Path, store: ArchiveStore | None = None
    ) -> None:
        self.engine, self.pool, self.volumes, self.root = engine, pool, volumes, root
        self.local = LocalStore(root)  # where archives are taken (and kept, by default)
        self.store = store or self.local
        self.paused: set[str] = set()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}  # one backup or restore of a volume at a time
        self._former: dict[str, ArchiveStore] = {}  # S3 locations backups were kept in before, by record
        self._restoring: Counter[int] = Counter()  # the backups being restored: not deleted meanwhile

    async def create(self, actor: str, tenant: str, volume: str) -> BackupRead:
        """Back the volume up and verify it; the row says verified or failed (with why) when this returns."""
        async with self._lock(tenant, volume):
            backup = await self._db(lambda s: backups.start(s, actor, tenant, volume))
            backup_id = saved_id(backup)
            archive = self.local.path(tenant, backup_id)
            try:
                if backup.kind == BackupKind.PG_DUMP:
                    manifest, needed = await self._dump(tenant, volume, archive, backup_id)
                else:
                    manifest, needed = await self._take(tenant, volume, archive)
                    await self._verify(archive, manifest, backup_id)
                await asyncio.to_thread(self.store.keep, tenant, backup_id, archive)
            except Exception as exc:  # whatever went wrong fails the backup, saying why: it never stays running
                expected = isinstance(
                    exc, BackupError | DumpError | EngineError | VolumeError | StoreError | OSError | Conflict
                )
                log.log(logging.WARNING if expected else logging.ERROR, "backup %d of %s/%s failed: %s",
                        backup_id, tenant, volume, exc, exc_info=not expected)  # fmt: skip
                await asyncio.to_thread(self._discard, tenant, backup_id)
                reason = (
                    exc.public if isinstance(exc, StoreError)  # the rest names the store: the operator's, in the log
                    else str(exc) if expected else f"an error of the platform ({type(exc).__name__}): see its log"
                )  # fmt: skip
                done = await self._db(lambda s: backups.finish(s, backup_id, failure=reason))
            else:
                done = await self._db(
                    lambda s: backups.finish(
                        s,
                        backup_id,
                        files=len(manifest.files),
                        size_bytes=needed,
                        sha256=manifest.archive_sha256,
                        store=self.store.record,
                    )  # fmt: skip
                )
            return backups.read([(done, tenant)])[0]

    async def restore(self, actor: str, tenant: str, backup_id: int, into: str | None) -> VolumeRead:
        """Replace the contents of the tenant's volume `into` (the backup's own by default) with the verified
        backup. The apps that mount it are stopped first, and none starts until it is over (no container holds
        the volume while root writes into it); they start again on the restored data. The archive's checksum
        is checked first, against the backup's record (nothing is touched if it changed), and every restored
        file's after; `Conflict` says what failed, `Unavailable` that the store could not hand the archive back
        (the apps kept running). The backup is not deleted meanwhile."""
        self._restoring[backup_id] += 1
        try:
            return await self._restore(actor, tenant, backup_id, into)
        finally:
            self._restoring[backup_id] -= 1

    async def _restore(self, actor: str, tenant: str, backup_id: int, into: str | None) -> VolumeRead:
        backup, target = await self._db(lambda s: backups.restorable(s, get_tenant(s, tenant), backup_id, into))
        async with self._lock(tenant, target.name), self._scratch() as scratch:
            failed = f"restoring backup {backup_id} into {target.name} failed"
            try:  # fetched and checked before the apps stop: a store that fails, or a changed archive, stops nothing
                archive = await asyncio.to_thread(self._fetch, tenant, backup, scratch)
                manifest = await asyncio.to_thread(_load_manifest, archive, backup.archive_sha256)
                await asyncio.to_thread(_check_archive, archive, manifest)
            except StoreError as exc:
                log.warning("%s: %s", failed, exc)
                raise Unavailable(f"{failed}: {exc.public}") from exc
            except (BackupError, OSError) as exc:
                raise Conflict(f"{failed}: {exc}") from exc
            if backup.kind == BackupKind.PG_DUMP:
                return await self._restore_dump(actor, tenant, backup, target, archive, failed)
            await self._db(lambda s: backups.set_restoring(s, tenant, target.name, True))
            try:
                await self._stopped(tenant, target.name)
                async with self.volumes.pinned(tenant, target.name) as guest:
                    if guest is not None:
                        await _restore_in_guest(guest, guest_path(tenant, target.name), archive, manifest)
                    else:
                        mount = await asyncio.to_thread(self.volumes.ensure_mounted, tenant, target.name)
                        await asyncio.to_thread(_restore_into, archive, manifest, mount)
            except VolumeError as exc:  # not reached where it lives (its guest, say): before anything changed
                raise Conflict(f"{failed}: {exc}; nothing was touched") from exc
            except (BackupError, OSError, EngineError) as exc:
                raise Conflict(f"{failed}: {exc}") from exc
            finally:
                await self._db(lambda s: backups.set_restoring(s, tenant, target.name, False))
        await self._db(lambda s: backups.record_restore(s, actor, get_tenant(s, tenant), backup, target))
        used = (await asyncio.to_thread(self.volumes.usage, tenant, target.name)).used_bytes / 2**20
        return await self._db(lambda s: volumes.read_volume(s, target, tenant, used))

    async def delete(self, actor: str, tenant: str, backup_id: int) -> None:
        """Delete the backup: marked `deleting` (restored no more), its archive and manifest removed here and in
        the store, then its row. `Unavailable` if the store kept them: the row stays `deleting`, and the schedule
        removes them when the store takes it."""
        if self._restoring[backup_id]:
            raise Conflict(f"backup {backup_id} is being restored; delete it once that is over")
        await self._db(lambda s: backups.mark_deleting(s, actor, get_tenant(s, tenant), backup_id))
        await self._forget(tenant, backup_id)

    def remove(self, tenant: str, backup_id: int, record: str | None = None) -> None:
        """Delete a backup's archive and manifest, here and in the store its row names (`record`); one gone
        already is fine. `StoreError` if the store kept them. Blocks."""
        self.local.delete(tenant, backup_id)
        if (store := self.store_of(record)) is not self.local:
            store.delete(tenant, backup_id)

    def forget_tenant(self, tenant: str, records: set[str | None]) -> None:
        """Delete every archive of a deleted tenant, here and in each store its backups were kept in (`records`,
        read before its rows went); `Unavailable` if a store kept some. Blocks."""
        self.local.forget_tenant(tenant)
        failed = []
        for store in {id(s): s for s in map(self.store_of, records | {None})}.values():
            if store is self.local:
                continue
            try:
                store.forget_tenant(tenant)
            except StoreError as exc:
                log.warning("the backups of deleted tenant %s are left: %s", tenant, exc)
                failed.append(exc.public)
        if failed:
            raise Unavailable(f"tenant {tenant} is deleted but not all its backups: {failed[0]}")

    def store_of(self, record: str | None) -> ArchiveStore:
        """The store a backup's row names: the platform's, or an S3 location it used before (reached with the
        credentials it has now). None is the platform's: rows from before stores were recorded, and backups
        on this host (`_fetch` looks on the host first)."""
        if record is None or record == self.store.record:
            return self.store
        if record not in self._former:
            self._former[record] = S3Store(S3Location.recorded(record))
        return self._former[record]

    def sweep(self) -> None:
        """Remove the scratch copies a stopped daemon left. Blocks."""
        shutil.rmtree(self.root / SCRATCH, ignore_errors=True)

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
            except Exception:  # the database out of reach, say: the schedule looks again next time
                log.exception("backups' schedule")

    async def run_schedule(self, now: datetime) -> None:
        """Back up every volume that is due on its plan's schedule, then remove the backups past its keep; one
        that fails is logged, and the others go on."""
        for tenant, volume in await self._db(lambda s: backups.due(s, now)):
            try:
                await self.create(SCHEDULE, tenant, volume)
            except Exception:  # the volume or its tenant went meanwhile, or worse: the rest still get theirs
                log.exception("scheduled backup of %s/%s", tenant, volume)
        for backup_id, tenant in await self._db(backups.deleting):  # those a store out of reach kept
            try:
                await self._forget(tenant, backup_id)
            except Unavailable:
                pass  # logged: tried again next time
            except Exception:
                log.exception("removing backup %d of %s, deleted", backup_id, tenant)
        for backup, tenant in await self._db(backups.surplus):
            try:
                await self.delete(SCHEDULE, tenant, saved_id(backup))
            except Unavailable:
                pass
            except Exception:
                log.exception("removing backup %d of %s past its keep", saved_id(backup), tenant)

    async def _forget(self, tenant: str, backup_id: int) -> None:
        """Remove a `deleting` backup's archive and manifest, then its row; `Unavailable` if the store kept
        them (the row stays)."""
        row = await self._db(lambda s: s.get(Backup, backup_id))
        record = row.store if row is not None else None
        try:
            await asyncio.to_thread(self.remove, tenant, backup_id, record)
        except StoreError as exc:
            where = self.store_of(record).describe(tenant, backup_id)
            log.warning("backup %d of %s: %s is left: %s", backup_id, tenant, where, exc)
            raise Unavailable(
                f"backup {backup_id} is marked deleting, but {exc.public}; it is deleted once the store takes it"
            ) from exc
        await self._db(lambda s: backups.forget(s, backup_id))

    async def _take(self, tenant: str, volume: str, archive: Path) -> tuple[Manifest, int]:
        """Archive the volume with its app paused, where it lives and kept there throughout (no move releases it
        mid-copy); its manifest; what the volume used (what a restore needs)."""
        async with self.volumes.pinned(tenant, volume) as guest:
            source = await asyncio.to_thread(self.volumes.ensure_mounted, tenant, volume) if guest is None else None
            usage = await self._usage(tenant, volume, guest)
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            room = "this backup (the archive and a copy to read it back)"
            await asyncio.to_thread(check_room, self.root, 2 * usage.used_bytes, room)
            archive.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            async with self._paused(tenant, volume):
                needed = (await self._usage(tenant, volume, guest)).used_bytes
                if guest is not None:
                    await _archive_from(guest, guest_path(tenant, volume), archive)
                else:  # --sparse: a file with holes is archived as it is stored, not as terabytes of zeros
                    await asyncio.to_thread(_tar, "--sparse", "-cf", str(archive), "-C", str(source), *_excluded(), ".")
        manifest = await asyncio.to_thread(read_manifest, archive, usage.size_bytes)
        await asyncio.to_thread(_manifest_path(archive).write_text, json.dumps(asdict(manifest)))
        return manifest, needed

    async def _dump(self, tenant: str, name: str, archive: Path, backup_id: int) -> tuple[Manifest, int]:
        """The service's database dumped from its running server and read back by a scratch server; its
        manifest (the tables' row sums), and what the database took (what a restore needs beside the live one)."""
        _, instance = await self._db(lambda s: services.running_service(s, tenant, name, "it is backed up"))
        runtime = self._runtime_of(instance.node)
        size = await service_backups.database_size(runtime, instance.container_id)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        room = "this dump (the dump, and a scratch server to read it back)"
        await asyncio.to_thread(check_room, self.root, 3 * size, room)
        archive.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        await service_backups.take(runtime, instance.container_id, archive)
        scratch = self.root / SCRATCH / str(backup_id)
        tables = await service_backups.verify(self._runtime(), archive, scratch, size)
        manifest = Manifest(tables, size, await asyncio.to_thread(_sha256_file, archive))
        await asyncio.to_thread(_manifest_path(archive).write_text, json.dumps(asdict(manifest)))
        return manifest, size

    async def _restore_dump(
        self, actor: str, tenant: str, backup: Backup, target: Volume, archive: Path, failed: str
    ) -> VolumeRead:
        """Restore the dump into the database of the service on `target`, beside the live one, which it then
        replaces: its apps keep running, and their sessions are cut at the swap."""
        name = target.name
        try:
            _, instance = await self._db(lambda s: services.running_service(s, tenant, name, "it is restored"))
            usage = await asyncio.to_thread(self.volumes.usage, tenant, name)
            service_backups.check_room(usage.size_bytes - usage.used_bytes, backup.size_bytes, name)
            await service_backups.restore(self._runtime_of(instance.node), instance.container_id, archive)
        except (DumpError, VolumeError, OSError) as exc:
            raise Conflict(f"{failed}: {exc}") from exc
        await self._db(lambda s: backups.record_restore(s, actor, get_tenant(s, tenant), backup, target))
        used = (await asyncio.to_thread(self.volumes.usage, tenant, name)).used_bytes / 2**20
        return await self._db(lambda s: volumes.read_volume(s, target, tenant, used))

    async def _verify(self, archive: Path, manifest: Manifest, backup_id: int) -> None:
        """Extract into a scratch directory, read every file back in a scratch container, compare checksums."""
        scratch = self.root / SCRATCH / str(backup_id)
        data, out = scratch / "data", scratch / "out"
        try:
            await asyncio.to_thread(_fresh, data, out)
            await asyncio.to_thread(_tar, "--numeric-owner", "-xpf", str(archive), "-C", str(data))
            await asyncio.to_thread(_hand_to_nobody, scratch)
            script = "cd /restore && find . -type f -exec sha256sum {} + > /out/sums"
            mounts = (Mount(str(data), "/restore"), Mount(str(out), "/out"))
            code, output = await self._runtime().run_once(SCRATCH_IMAGE, ["/bin/sh", "-c", script], mounts)
            if code != 0:
                raise BackupError(f"the scratch container could not read the backup back: {output.strip()[-300:]}")
            sums = await asyncio.to_thread((out / "sums").read_bytes)
            mismatch = await asyncio.to_thread(compare, manifest, parse_sums(sums))
            if mismatch:
                raise BackupError(f"the backup does not restore as it was taken: {mismatch}")
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    def _fetch(self, tenant: str, backup: Backup, scratch: Path) -> Path:
        """The archive where a restore reads it: the one on this host if there is one (taken before the store
        was S3, say), else the one in the store its row names, fetched into `scratch`."""
        backup_id = saved_id(backup)
        if self.local.path(tenant, backup_id).exists():
            return self.local.path(tenant, backup_id)
        return self.store_of(backup.store).fetch(tenant, backup_id, scratch)

    def _discard(self, tenant: str, backup_id: int) -> None:
        """What a failed backup left, here and in the store (a pair half-uploaded); logged if the store keeps it."""
        self.local.delete(tenant, backup_id)
        if self.store is not self.local:
            try:
                self.store.delete(tenant, backup_id)
            except StoreError as exc:
                log.warning(
                    "failed backup %d: %s may be left: %s", backup_id, self.store.describe(tenant, backup_id), exc
                )

    @asynccontextmanager
    async def _scratch(self) -> AsyncIterator[Path]:
        """A directory of its own under the scratch root, removed after whatever happens."""
        parent = self.root / SCRATCH
        await asyncio.to_thread(parent.mkdir, parents=True, exist_ok=True, mode=0o700)
        directory = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="restore-", dir=parent))
        try:
            yield directory
        finally:
            await asyncio.to_thread(shutil.rmtree, directory, True)

    @asynccontextmanager
    async def _paused(self, tenant: str, volume: str) -> AsyncIterator[None]:
        """The containers of the app that mounts the volume frozen for the duration (those not running are left
        as they are: they write nothing either), and thawed after whatever happens."""
        found = await self._db(lambda s: self._containers(s, tenant, volume))
        frozen: list[tuple[NodeRuntime, str]] = []
        try:
            for node, container in found:
                runtime = self.pool[node].runtime if node in self.pool.names() else None
                if runtime is None:
                    continue  # its node is gone: nothing of it writes here
                try:
                    await runtime.pause(container)
                except EngineError as exc:
                    log.info("backup of %s/%s: %s not paused: %s", tenant, volume, container[:12], exc)
                    continue
                frozen.append((runtime, container))
                self.paused.add(container)
            yield
        finally:
            for runtime, container in frozen:
                try:
                    await runtime.unpause(container)
                except EngineError as exc:
                    log.error("backup of %s/%s: %s stays paused: %s", tenant, volume, container[:12], exc)
                self.paused.discard(container)

    async def _stopped(self, tenant: str, volume: str) -> None:
        """Wait until no instance of an app that mounts the volume is left (the reconciler removes them while
        the volume is marked restoring), nor any running container of the tenant that mounts it on any node (an
        older revision of an app that mounted it before)."""
        deadline = asyncio.get_running_loop().time() + RESTORE_STOP_SECONDS
        holding = partial(self.volumes.containers_of, tenant, volume)
        while await self._db(lambda s: self._containers(s, tenant, volume)) or await holding():
            if asyncio.get_running_loop().time() > deadline:
                raise BackupError(f"its apps' instances did not stop within {RESTORE_STOP_SECONDS:.0f} s: "
                                  "nothing was touched")  # fmt: skip
            await asyncio.sleep(RESTORE_POLL_SECONDS)

    def _containers(self, session: Session, tenant: str, volume: str) -> list[tuple[str, str]]:
        """(node, container) of every instance of the apps that mount the volume."""
        users = volumes.mounted_by(session, get_tenant(session, tenant), volume)
        running = instances_of(session, [saved_id(app) for app in users])
        return [(row.node, row.container_id) for rows in running.values() for row in rows]

    async def _usage(self, tenant: str, volume: str, guest: GuestDisks | None) -> VolumeUsage:
        """What the volume holds, read where it is mounted: in `guest`, or on the host."""
        if guest is not None:
            return await guest.usage(guest_path(tenant, volume))
        return await asyncio.to_thread(self.volumes.usage, tenant, volume)

    def _runtime(self) -> NodeRuntime:
        """The host's engine: it runs the scratch containers."""
        return self.pool[HOST_NODE].runtime

    def _runtime_of(self, node: str) -> NodeRuntime:
        if node not in self.pool.names():
            raise Unavailable(f"node {node!r} of the service is not reachable now")
        return self.pool[node].runtime

    def _lock(self, tenant: str, volume: str) -> asyncio.Lock:
        return self._locks.setdefault((tenant, volume), asyncio.Lock())

    async def _db(self, work: Callable[[Session], T]) -> T:
        def run() -> T:
            with db.session(self.engine) as session:
                return work(session)

        return await asyncio.to_thread(run)


def read_manifest(archive: Path, limit: int) -> Manifest:
    """Every regular file's checksum and the sizes in all, read from the archive itself, and the archive's.
    `BackupError` if the files add up to more than `limit` bytes (a volume's size: only sparse files, whose
    holes count, get there), before hashing terabytes of holes."""
    files, size = {}, 0
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.isfile():
                size += member.size
                if size > limit:
                    raise BackupError(
                        f"its files add up to over {limit // 2**20} MiB, the volume's size (sparse files count their "
                        f"holes; {_relative(member.name)} is one): not backed up"
                    )
                stream = tar.extractfile(member)
                assert stream is not None  # a regular file has content
                files[_relative(member.name)] = _sha256(stream)
            elif member.islnk() and _relative(member.linkname) in files:  # a second name of a file before it
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


def parse_sums(output: bytes) -> dict[str, str]:
    """`sha256sum`'s lines (`HASH  ./PATH`) as path -> checksum; names as the file system has them (bytes that
    are not UTF-8 kept as Python keeps them, as in `tree_sums` and the manifest). GNU's (a guest's) escapes a name
    holding a backslash or a line break, and says so by a backslash before the line; busybox's (the scratch
    container's) does not."""
    sums = {}
    for line in output.decode(errors="surrogateescape").split("\n"):
        if not line:
            continue
        escaped = line.startswith("\\")
        digest, _, path = line.removeprefix("\\").partition("  ")
        if escaped:
            path = re.sub(r"\\(.)", lambda found: GNU_ESCAPES.get(found[1], found[0]), path)
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


def _load_manifest(archive: Path, recorded: str | None) -> Manifest:
    """The archive's manifest, if it is the one the backup was verified with: it names the archive's checksum
    that the backup's row recorded (the row is the platform's; a store's objects may be changed by whoever can
    write there)."""
    try:
        manifest = Manifest(**json.loads(_manifest_path(archive).read_text()))
    except (ValueError, TypeError) as exc:
        raise BackupError(f"its manifest is unreadable ({exc}): not restored (the volume is as it was)") from exc
    if manifest.archive_sha256 != recorded:
        raise BackupError("its manifest changed since it was verified: not restored (the volume is as it was)")
    return manifest


def _check_archive(archive: Path, manifest: Manifest) -> None:
    """`BackupError` unless the archive is the one verified (it is checked again as it is extracted)."""
    with archive.open("rb") as stream:
        if _sha256(stream) != manifest.archive_sha256:
            raise BackupError("its archive changed since it was verified: not restored (the volume is as it was)")


def _restore_into(archive: Path, manifest: Manifest, mount: Path) -> None:
    """Check the archive, replace the volume's contents with it and check every file; the archive is read from
    one open file throughout, so what was checked is what is extracted."""
    with archive.open("rb") as stream:
        if _sha256(stream) != manifest.archive_sha256:
            raise BackupError("its archive changed since it was verified: not restored (the volume is as it was)")
        stream.seek(0)
        try:
            _clear(mount)
            _tar("--numeric-owner", "-xpf", "-", "-C", str(mount), stdin=stream)
        except (BackupError, OSError) as exc:
            raise BackupError(f"{exc}; the volume holds what was restored until then: restore again") from exc
    mismatch = compare(manifest, tree_sums(mount))
    if mismatch:
        raise BackupError(f"the restored files differ from the backup: {mismatch}")


async def _archive_from(guest: GuestDisks, path: str, archive: Path) -> None:
    """The guest's archive of the volume at `path`, streamed into `archive` as it comes."""
    with archive.open("wb") as into:
        await guest.archive(path, into)


async def _restore_in_guest(guest: GuestDisks, path: str, archive: Path, manifest: Manifest) -> None:
    """`_restore_into` for a volume at `path` in `guest`: the archive checked, then streamed from that same open
    file into the guest, which replaces the volume's files with it; every file's checksum read back there."""
    with archive.open("rb") as stream:
        if await asyncio.to_thread(_sha256, stream) != manifest.archive_sha256:
            raise BackupError("its archive changed since it was verified: not restored (the volume is as it was)")
        stream.seek(0)
        try:
            await guest.extract(path, stream)
        except VolumeError as exc:
            raise BackupError(f"{exc}; the volume may hold part of the backup: restore again") from exc
    try:
        sums = await guest.sums(path)
    except VolumeError as exc:
        raise BackupError(f"{exc}; the backup was restored but not checked: restore again") from exc
    mismatch = compare(manifest, parse_sums(sums))
    if mismatch:
        raise BackupError(f"the restored files differ from the backup: {mismatch}")


def _clear(mount: Path) -> None:
    for entry in mount.iterdir():
        if entry.name in KEPT_OUT:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _fresh(*directories: Path) -> None:
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)


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


def _tar(*arguments: str, stdin: IO[bytes] | None = None) -> None:
    source = stdin if stdin is not None else subprocess.DEVNULL
    done = subprocess.run(["tar", *arguments], capture_output=True, stdin=source, check=False)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()[-300:]
        raise BackupError(f"tar failed: {message or f'exit status {done.returncode}'}")


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
