"""The database locked by another writer for longer than the daemon waits: writes answer 503 (with
Retry-After) and change nothing; once the lock is gone the same write succeeds, once. On each backend."""

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from tenants.client import ApiError
from tenants.db import LOCK_TIMEOUT_MS
from tenants.schemas import TenantCreate
from tests.harness import start_daemon
from tests.postgres import BACKENDS, Postgres

Lock = Callable[[], AbstractContextManager[None]]  # holds the write lock on tenants, as a second writer would


@contextmanager
def sqlite_write_lock(path: Path) -> Iterator[None]:
    other = sqlite3.connect(path)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.rollback()
        other.close()


@contextmanager
def postgres_write_lock(url: str) -> Iterator[None]:
    with psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string()) as other:
        other.execute("LOCK TABLE tenant IN EXCLUSIVE MODE")  # readers go on, writers wait
        yield
        other.rollback()


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[dict[str, str], Lock]]:
    """The daemon's settings for a database on each backend, and how to lock it."""
    if request.param == "sqlite":
        yield {}, lambda: sqlite_write_lock(tmp_path / "home" / "strata.db")
        return
    postgres: Postgres = request.getfixturevalue("postgres")
    with postgres.database() as url:
        yield {"STRATA_DATABASE_URL": url}, lambda: postgres_write_lock(url)


def test_a_locked_database_is_a_503_that_loses_and_doubles_nothing(
    database: tuple[dict[str, str], Lock], tmp_path: Path
) -> None:
    settings, write_lock = database
    home = tmp_path / "home"
    home.mkdir()
    daemon = start_daemon(home, env=settings)
    locked, release = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        with write_lock():
            locked.set()
            release.wait(timeout=60)

    holder = threading.Thread(target=hold_the_write_lock)
    try:
        holder.start()
        assert locked.wait(timeout=10)
        with daemon.operator() as api:
            started = time.monotonic()
            with pytest.raises(ApiError) as refused:
                api.create_tenant(TenantCreate(name="acme"))
            assert (refused.value.status, refused.value.code) == (503, "unavailable")
            assert time.monotonic() - started >= LOCK_TIMEOUT_MS / 1000 * 0.9  # it waited first
            release.set()
            holder.join(timeout=10)
            api.create_tenant(TenantCreate(name="acme"))
            assert [t.name for t in api.tenants()] == ["acme"]
    finally:
        release.set()
        holder.join(timeout=10)
        assert daemon.stop() == 0
