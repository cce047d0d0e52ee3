"""Fixtures: a daemon per session, a fresh tenant name per test, a migrated database per test on each backend."""

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tenants import db
from tests.containers import running_platform
from tests.harness import Daemon, start_daemon
from tests.postgres import BACKENDS, Postgres

_names = itertools.count(1)
MIGRATED = "strata_migrated"  # the session's PostgreSQL template: a database at the current schema


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the API and CLI tests; each test uses tenants of its own (see `unique`)."""
    home = tmp_path_factory.mktemp("strata") / "home"
    running = start_daemon(home)
    yield running
    assert running.stop() == 0
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh tenant name, so tests sharing a daemon never see each other's data. Afterwards the tenants of
    that name (and `NAME-...`) are deleted from the shared platform: their instances would otherwise keep
    claiming its node's CPU and memory, and the session's later tests would find no room."""
    name = f"t{os.getpid() % 10000}-{next(_names)}"
    yield name
    if "platform" in request.fixturenames:
        shared: Daemon = request.getfixturevalue("platform")
        with shared.operator() as api:
            for tenant in api.tenants():
                if tenant.name == name or tenant.name.startswith(f"{name}-"):
                    api.delete_tenant(tenant.name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """The session's PostgreSQL server, with a migrated template database (`MIGRATED`) to copy."""
    server = Postgres.create()
    try:
        server.start()
        server.create_database(MIGRATED)
        db.open_engine(server.url(MIGRATED)).dispose()
        yield server
    finally:
        server.remove()


@pytest.fixture(params=BACKENDS)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'strata.db'}"
    else:
        with request.getfixturevalue("postgres").database() as url:
            yield url


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated control-plane database, as the daemon opens it, on each backend."""
    if request.param == "sqlite":
        engine = db.open_engine(f"sqlite:///{tmp_path / 'strata.db'}")
        yield engine
        engine.dispose()
        return
    with request.getfixturevalue("postgres").database(template=MIGRATED) as url:
        engine = db.open_engine(url)
        yield engine
        engine.dispose()


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A running platform with the sample images built, shared by the tests of the session."""
    with running_platform(tmp_path_factory.mktemp("paas") / "home") as daemon:
        yield daemon
