"""Backups of managed PostgreSQL as `pg_dump`s: taken from the running server (a dump is one snapshot of the
database, so its apps keep running and writing), verified in a scratch server before they count, and restored
beside the live database, which is swapped for it only once the restore is whole.

- Taken: `pg_dump -Fc` in the service's container, as the superuser over its socket, streamed to the archive.
- Verified: in a scratch container of the service's image (as nobody, no network, no capability), a fresh
  cluster gets the dump and is dumped again (its schema and its data, the data as text once); the two must list
  the same objects, and every table the same rows (a count and a sum of hashes of each row as COPY writes it:
  order-free). Both are written with the same session settings, so a value reads the same.
- Restored: into a new database of the service; then, in one transaction, the live database's sessions are
  ended and the two are renamed; then the old one is dropped. A restore that fails before the swap leaves the
  live database as it was. The roles are the cluster's, not the database's: a restore keeps the service's logins.
  What `ALTER DATABASE ... SET` gave the database is not in a dump (as with any `pg_dump` without `--create`).

A dump is the tenant's: restoring it runs the tenant's code (a CHECK constraint's function, a generated column),
so every restore, the scratch server's too, runs as the owner role `app` (`--role`), never as the superuser, and
makes everything `app`'s (`--no-owner`). A dump waits for its locks a minute at most (a tenant's transaction
holding a table cannot hold up the platform's schedule), and what the scratch server leaves is read only if it
is a regular file of a bounded size.
"""

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from hosting.paas.runtime import EngineError, ExecSession, Mount, NodeRuntime
from hosting.paas.service_credentials import exit_code, run_sql
from tenants import services

log = logging.getLogger(__name__)

# Both dumps are written in these: a timestamp or a bytea reads the same whatever the database's own settings.
OPTIONS = "PGOPTIONS=-c TimeZone=UTC -c bytea_output=hex -c extra_float_digits=3"
DUMP = ["env", OPTIONS, "pg_dump", "--format=custom", "--lock-wait-timeout=60s", "--dbname", services.DATABASE]
RESTORING = "strata_restore"  # the database a restore fills, beside the live one
REPLACED = "strata_replaced"  # the live one once the restore took its name, until it is dropped
RESTORING_AS = f"--exit-on-error --no-owner --role={services.USERNAME}"  # what the tenant's code runs as
RESTORE = ["pg_restore", *RESTORING_AS.split(), "--dbname", RESTORING]
CHUNK = 1 << 20
STDERR_LIMIT = 2000  # bytes of a command's errors kept for its message
# Not in the objects compared: a dump's own database (restored into another, by design), and data (compared row
# by row: the restored server's schema is listed from a schema-only dump, which writes its data once).
NOT_COMPARED = ("DATABASE", "DATABASE PROPERTIES", "TABLE DATA", "SEQUENCE SET", "BLOB", "BLOBS")

SCRATCH_IMAGE = services.POSTGRES_IMAGE
# The scratch server, on /out (the container's one writable place), reached over its socket there.
VERIFY = f"""set -eu
export PGHOST=/out/sock PGUSER=postgres {OPTIONS.replace("=", "='", 1)}'
mkdir /out/sock
initdb -D /out/pgdata -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
pg_ctl -D /out/pgdata -s -w -l /out/server.log start -o "-c listen_addresses= -c unix_socket_directories=/out/sock \
 -c fsync=off -c shared_buffers=16MB -c dynamic_shared_memory_type=posix -c jit=off"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'CREATE ROLE {services.USERNAME}' \
 -c 'CREATE DATABASE {services.DATABASE} OWNER {services.USERNAME}'
pg_restore {RESTORING_AS} -d {services.DATABASE} /in/dump
pg_dump --schema-only --format=custom -f /out/restored -d {services.DATABASE}
pg_dump --data-only -f /out/restored.data -d {services.DATABASE}
pg_ctl -D /out/pgdata -s -w -m fast stop
pg_restore -l /in/dump > /out/dump.toc
pg_restore -l /out/restored > /out/restored.toc
pg_restore --data-only -f /out/dump.data /in/dump
"""

PREPARE = f"""DROP DATABASE IF EXISTS {REPLACED} WITH (FORCE);
DROP DATABASE IF EXISTS {RESTORING} WITH (FORCE);
CREATE DATABASE {RESTORING} OWNER {services.USERNAME} STRATEGY FILE_COPY;
"""
# The live database's sessions ended and the names swapped in one transaction; a session that came meanwhile
# makes the rename wait (up to 5 s) and fail, and it is tried again, on a fresh view of the sessions.
SWAP = f"""DO $$
BEGIN
  FOR attempt IN 1..5 LOOP
    PERFORM pg_stat_clear_snapshot();
    PERFORM pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE datname = '{services.DATABASE}' AND pid <> pg_backend_pid();
    BEGIN
      ALTER DATABASE {services.DATABASE} RENAME TO {REPLACED};
      EXIT;
    EXCEPTION WHEN object_in_use THEN
      IF attempt = 5 THEN RAISE; END IF;
    END;
  END LOOP;
  ALTER DATABASE {RESTORING} RENAME TO {services.DATABASE};
END $$;
"""
DROP_REPLACED = f"DROP DATABASE IF EXISTS {REPLACED} WITH (FORCE);\n"
DISCARD = f"DROP DATABASE IF EXISTS {RESTORING} WITH (FORCE);\n"
SWAPPED = f"SELECT count(*) FROM pg_database WHERE datname = '{RESTORING}'"  # 0 once the swap is committed


class DumpError(Exception):
    """A dump, its verification or its restore failed; the message says which, in words fit for the API."""


async def database_size(runtime: NodeRuntime, container_id: str) -> int:
    """The bytes the service's database takes now (what a restore of a dump of it needs)."""
    query = ["psql", "-X", "-A", "-t", "-d", services.DATABASE, "-c", "SELECT pg_database_size(current_database())"]
    code, output, errors = await _exec(runtime, container_id, query)
    if code != 0 or not output.strip().isdigit():
        raise DumpError(f"the database's size could not be read: {errors or f'exit status {code}'}")
    return int(output)


async def take(runtime: NodeRuntime, container_id: str, archive: Path) -> None:
    """Dump the service's database into `archive`, streamed (the server's snapshot: its apps run on). What a
    restore cut off by a daemon's stop left beside the database goes first: it takes room on the volume."""
    try:
        await run_sql(runtime, container_id, DROP_REPLACED + DISCARD, database="postgres")
    except EngineError as exc:
        raise DumpError(f"the service's server does not answer: {exc}") from exc
    with archive.open("wb") as out:
        code, _, errors = await _exec(runtime, container_id, DUMP, stdout=out)
    if code != 0:
        raise DumpError(f"pg_dump failed: {errors or f'exit status {code}'}")


async def verify(runtime: NodeRuntime, archive: Path, scratch: Path, database_bytes: int) -> dict[str, str]:
    """Restore the dump into a scratch server on `runtime` (`scratch` its directory, removed after), dump that
    again and compare; returns the dump's tables (a COPY line) with their count and sum of row hashes, for the
    manifest. `database_bytes` (what the dumped database took) bounds what the scratch server's files may hold.
    `DumpError` says what differs, or what failed."""
    given, out = scratch / "in", scratch / "out"
    try:
        await asyncio.to_thread(_prepare, archive, given, out)
        mounts = (Mount(str(given), "/in"), Mount(str(out), "/out"))
        code, output = await runtime.run_once(SCRATCH_IMAGE, ["/bin/sh", "-c", VERIFY], mounts)
        if code != 0:
            raise DumpError(f"the dump does not restore into a scratch server: {output.strip()[-STDERR_LIMIT:]}")
        return await asyncio.to_thread(_compare, out, 4 * database_bytes + (64 << 20))
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)


async def restore(runtime: NodeRuntime, container_id: str, archive: Path) -> None:
    """Restore the dump beside the service's live database and swap them; nothing of the live one changes
    unless the restore is whole. `DumpError` says what failed (the live database is as it was then)."""
    try:
        await run_sql(runtime, container_id, PREPARE, database="postgres")
        with archive.open("rb") as dump:
            code, _, errors = await _exec(runtime, container_id, RESTORE, stdin=dump)
        if code != 0:
            raise DumpError(f"pg_restore failed (the database is as it was): {errors or f'exit status {code}'}")
        await _swap(runtime, container_id)
    except EngineError as exc:
        raise DumpError(f"the restore failed before its swap (the database is as it was): {exc}") from exc
    finally:
        try:
            await run_sql(runtime, container_id, DISCARD, database="postgres")
        except EngineError:
            pass  # the next dump or restore drops it first
    try:
        await run_sql(runtime, container_id, DROP_REPLACED, database="postgres")
    except EngineError as exc:  # restored all the same: the old data goes at the next dump or restore
        log.warning("the database replaced by a restore is left for now: %s", exc)


async def _swap(runtime: NodeRuntime, container_id: str) -> None:
    """The restored database swapped in; `EngineError` only if it is not (an answer lost after the commit is
    no failure: what the server has is asked)."""
    try:
        await run_sql(runtime, container_id, SWAP, database="postgres")
    except EngineError:
        code, output, _ = await _exec(runtime, container_id, ["psql", "-XAt", "-d", "postgres", "-c", SWAPPED])
        if code != 0 or output.strip() != "0":
            raise


def check_room(free_bytes: int, database_bytes: int, name: str) -> None:
    """`DumpError` unless the service's volume has room for the restored database beside the live one, and for
    the WAL its data writes (as much again, until a checkpoint recycles it: a server whose WAL finds no room
    stops). Its catalogs are copied as files, with no WAL: that spares about a WAL segment."""
    needed = 2 * database_bytes
    if free_bytes < needed:
        raise DumpError(
            f"volume {name!r} has {free_bytes / 2**20:.0f} MiB free and the restore needs {needed / 2**20:.0f} MiB "
            "beside the live database: nothing was touched (restore into a bigger service with --to)"
        )


def table_sums(data: IO[bytes]) -> dict[str, str]:
    """`pg_restore --data-only`'s output as {table's COPY line: "ROWS:SUM"} (and "" for the other statements,
    such as the sequences' `setval`): the rows' count and a sum of their hashes, which no order changes."""
    counts: Counter[str] = Counter()
    sums: Counter[str] = Counter()
    for key, line in _rows(data):
        counts[key] += 1
        sums[key] = (sums[key] + int.from_bytes(hashlib.blake2b(line, digest_size=16).digest())) % (1 << 128)
    return {key: f"{counts[key]}:{sums[key]:032x}" for key in counts}


def toc_entries(listing: str) -> Counter[str]:
    """`pg_restore -l`'s entries as "TYPE SCHEMA NAME OWNER" (their dump ids and oids differ between servers)."""
    entries: Counter[str] = Counter()
    for line in listing.splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        _, _, rest = line.partition("; ")
        entry = rest.split(" ", 2)[2]  # after the catalog's oid and the object's
        if not any(entry.startswith(f"{kind} ") for kind in NOT_COMPARED):
            entries[entry] += 1
    return entries


def _rows(data: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    table: str | None = None
    for raw in data:
        line = raw.rstrip(b"\n")
        if table is not None:
            if line == b"\\.":
                table = None
            else:
                yield table, line
        elif line.startswith(b"COPY ") and line.endswith(b" FROM stdin;"):
            table = line.decode(errors="surrogateescape")
            yield table, b""  # an empty table has its section too
        elif line and not line.startswith((b"--", b"\\restrict ", b"\\unrestrict ")):  # a key new every time
            yield "", line


def _compare(out: Path, limit: int) -> dict[str, str]:
    taken, restored = (toc_entries(_read(out / f"{name}.toc", limit).decode()) for name in ("dump", "restored"))
    if taken != restored:
        differing = sorted((taken - restored) + (restored - taken))
        raise DumpError(f"the restored database's objects differ from the dump's: {len(differing)}, e.g. "
                        f"{differing[0]}")  # fmt: skip
    sums = {}
    for name in ("dump", "restored"):
        with _opened(out / f"{name}.data", limit) as data:
            sums[name] = table_sums(data)
    for table, found in sums["dump"].items():
        if sums["restored"].get(table) != found:
            raise DumpError(f"the restored rows differ from the dump's in {table.removesuffix(' FROM stdin;')}")
    if extra := sums["restored"].keys() - sums["dump"].keys():
        raise DumpError(f"the restored database has data the dump has not: {sorted(extra)[0]}")
    return {table: found for table, found in sums["dump"].items() if table}


def _opened(path: Path, limit: int) -> IO[bytes]:
    """`path`, a file the scratch container wrote, opened only if it is a regular file (not a link to one of
    the host's: it is read as root) of at most `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise DumpError(f"the scratch server left no readable {path.name}: {exc.strerror}") from exc
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode) or found.st_size > limit:
        os.close(fd)
        raise DumpError(f"the scratch server left {path.name} that is no regular file of at most {limit >> 20} MiB")
    return os.fdopen(fd, "rb")


def _read(path: Path, limit: int) -> bytes:
    with _opened(path, limit) as opened:
        return opened.read()


def _prepare(archive: Path, given: Path, out: Path) -> None:
    """The dump, readable by the scratch container's nobody, and a directory it may write."""
    for directory in (given, out):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        directory.chmod(0o777)
    shutil.copyfile(archive, given / "dump")
    (given / "dump").chmod(0o644)


async def _exec(
    runtime: NodeRuntime, container_id: str, command: list[str], *, stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
) -> tuple[int | None, str, str]:  # fmt: skip
    """Run `command` in the container: `stdin` fed to it, its output written to `stdout` (else returned, as
    text); (exit code, output, the tail of its errors)."""
    session = await runtime.exec(container_id, command, tty=False)
    output, errors = bytearray(), bytearray()
    feeding = asyncio.create_task(_feed(session, stdin))
    try:
        pending = bytearray()
        while (piece := await session.read()) is not None:
            stream, data = piece
            if stream == 2:
                errors += data
                del errors[:-STDERR_LIMIT]
            elif stdout is None:
                output += data
            else:
                pending += data
                if len(pending) >= CHUNK:
                    await asyncio.to_thread(stdout.write, bytes(pending))
                    pending.clear()
        if stdout is not None and pending:
            await asyncio.to_thread(stdout.write, bytes(pending))
        await feeding
        code = await exit_code(session)
    finally:
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding
        await session.kill()
    return code, output.decode(errors="replace"), errors.decode(errors="replace").strip()


async def _feed(session: ExecSession, stdin: IO[bytes] | None) -> None:
    """`stdin` to the command, then its end; a command that ended first (failed) takes no more."""
    try:
        while stdin is not None and (chunk := await asyncio.to_thread(stdin.read, CHUNK)):
            await session.write(chunk)
        await session.close_input()
    except (EngineError, OSError):
        pass  # its exit code and errors say why
