"""The database locked by another writer for longer than the daemon waits: writes answer 503 (with
Retry-After) and change nothing; once the lock is gone the same write succeeds, once."""

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tenants.client import ApiError
from tenants.db import SQLITE_BUSY_TIMEOUT_MS
from tenants.schemas import TenantCreate
from tests.harness import start_daemon


def test_a_locked_database_is_a_503_that_loses_and_doubles_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    daemon = start_daemon(home)
    locked, release = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        other = sqlite3.connect(home / "strata.db")
        other.execute("BEGIN IMMEDIATE")  # the write lock, as a second writer would hold it
        locked.set()
        release.wait(timeout=60)
        other.rollback()
        other.close()

    holder = threading.Thread(target=hold_the_write_lock)
    try:
        holder.start()
        assert locked.wait(timeout=10)
        with daemon.operator() as api:
            started = time.monotonic()
            with pytest.raises(ApiError) as refused:
                api.create_tenant(TenantCreate(name="acme"))
            assert (refused.value.status, refused.value.code) == (503, "unavailable")
            assert time.monotonic() - started >= SQLITE_BUSY_TIMEOUT_MS / 1000 * 0.9  # it waited first
            release.set()
            holder.join(timeout=10)
            api.create_tenant(TenantCreate(name="acme"))
            assert [t.name for t in api.tenants()] == ["acme"]
    finally:
        release.set()
        holder.join(timeout=10)
        assert daemon.stop() == 0
