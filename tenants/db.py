"""The control-plane database: an engine tuned for many readers and one writer, upgraded on open.

SQLite (the default, embedded) runs in WAL mode with a busy timeout, so the API, the reconciler and the console
can read while one of them writes. PostgreSQL (`postgresql+psycopg://USER@HOST/DB`, psycopg 3) is the database
of larger installations. On both a statement waits at most `LOCK_TIMEOUT_MS` for another writer's lock, and a
connection at most `CONNECT_TIMEOUT_SECONDS`, then fails with an OperationalError, which the API answers with
503 and Retry-After: the transaction is rolled back, nothing half-written.
"""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Engine, Table, create_engine, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session

from tenants.errors import Conflict

LOCK_TIMEOUT_MS = 5_000  # SQLite's busy_timeout, PostgreSQL's lock_timeout
CONNECT_TIMEOUT_SECONDS = 5  # a PostgreSQL server that does not answer (SQLite's file is always there)
MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 0x5374726174614D67  # "StrataMg": held by the transaction that upgrades the schema


def open_engine(url: str) -> Engine:
    """Create an engine for `url` and bring its schema to the current version (keeping the data).

    A bare `postgresql://` URL means psycopg 3, the driver installed (SQLAlchemy's default would be psycopg2).
    """
    parsed = _engine_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args=_SQLITE_ARGS)
        event.listen(engine, "connect", _tune_sqlite)
    else:
        # pre_ping: a pooled connection that a server restart closed is replaced, not handed to a request
        engine = create_engine(parsed, connect_args=_POSTGRES_ARGS, pool_pre_ping=True)
    upgrade(engine)
    return engine


def _engine_url(url: str) -> URL:
    """`url` parsed, its PostgreSQL driver made explicit (psycopg 3)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+psycopg") if parsed.drivername == "postgresql" else parsed


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to `revision`; idempotent, so every start calls it.

    On SQLite, foreign keys are off while they run: a migration that rebuilds a table (batch mode) drops the
    old one, which would otherwise cascade to every row that refers to it. They are checked afterwards.
    PostgreSQL alters tables in place, and runs them all in one transaction as SQLite does, holding an advisory
    lock: a second daemon starting meanwhile waits for it, then finds the schema current.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # only outside a transaction: first
            connection.commit()
        try:
            with connection.begin():
                if not sqlite:  # daemons starting together on one database upgrade it one after the other
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").all()):
                    raise RuntimeError(f"the migration left rows that refer to nothing: {broken[:5]}")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


class _Session(Session):
    def close(self) -> None:
        """Close; a connection the server dropped meanwhile (PostgreSQL stopped, say) cannot be rolled back, and
        needs not be: the server rolled back what it had not committed. Its session ends without an error, so a
        request answered already is not failed afterwards."""
        try:
            super().close()
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise


def session(engine: Engine) -> Session:
    """A session whose objects stay readable after commit (the API serialises them afterwards)."""
    return _Session(engine, expire_on_commit=False)


def clock(session: Session) -> datetime:
    """The time by the database's clock (UTC): every daemon on a PostgreSQL database stamps and judges heartbeats
    and front doors' activity by this one clock, whatever its host's says; on SQLite (one daemon) this host's."""
    if session.get_bind().dialect.name == "postgresql":
        now: datetime = session.execute(text("SELECT now()")).scalar_one()
        return now.astimezone(UTC)
    return datetime.now(UTC)


def insert(dialect: str, table: Table) -> Any:
    """An INSERT into `table` in the dialect's own form, which has ON CONFLICT (SQLite's and PostgreSQL's alike)."""
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def commit(session: Session, *, conflict: str) -> None:
    """Commit; a unique constraint lost to a concurrent writer becomes the same Conflict a check gives."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(conflict) from None


# Sessions run in worker threads; each thread still gets its own connection from the pool.
_SQLITE_ARGS: dict[str, Any] = {"check_same_thread": False, "timeout": LOCK_TIMEOUT_MS / 1000}
_POSTGRES_ARGS: dict[str, Any] = {
    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
    "options": f"-c lock_timeout={LOCK_TIMEOUT_MS}",
    "application_name": "strata",
}


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={LOCK_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
