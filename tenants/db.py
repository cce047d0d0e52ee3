"""The control-plane database: an engine tuned for many readers and one writer, upgraded on open.

SQLite (the default) runs in WAL mode with a busy timeout, so the API, the reconciler and the console
can read while one of them writes; any SQLAlchemy URL (PostgreSQL at scale) works the same way.
"""

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from tenants.errors import Conflict

SQLITE_BUSY_TIMEOUT_MS = 5_000
MIGRATIONS = Path(__file__).parent / "migrations"


def open_engine(url: str) -> Engine:
    """Create an engine for `url` and bring its schema to the current version (keeping the data)."""
    engine = create_engine(url, connect_args=_connect_args(url))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _tune_sqlite)
    upgrade(engine)
    return engine


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to `revision`; idempotent, so every start calls it.

    On SQLite, foreign keys are off while they run: a migration that rebuilds a table (batch mode) drops the
    old one, which would otherwise cascade to every row that refers to it. They are checked afterwards.
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
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").all()):
                    raise RuntimeError(f"the migration left rows that refer to nothing: {broken[:5]}")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def session(engine: Engine) -> Session:
    """A session whose objects stay readable after commit (the API serialises them afterwards)."""
    return Session(engine, expire_on_commit=False)


def commit(session: Session, *, conflict: str) -> None:
    """Commit; a unique constraint lost to a concurrent writer becomes the same Conflict a check gives."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(conflict) from None


def _connect_args(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Sessions run in worker threads; each thread still gets its own connection from the pool.
        return {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    return {}


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
