"""The schema is created and upgraded on open, keeping what an older database holds."""

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlmodel import SQLModel

from tenants import db, tenancy


def revisions() -> list[str]:
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    return [script.revision for script in reversed(list(ScriptDirectory.from_config(config).walk_revisions()))]


def test_the_migrations_build_exactly_the_models_schema(tmp_path: Path) -> None:
    engine = db.open_engine(f"sqlite:///{tmp_path / 'strata.db'}")
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), SQLModel.metadata) == []


def test_an_older_database_is_upgraded_with_its_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'strata.db'}"
    oldest = create_engine(url)
    db.upgrade(oldest, revisions()[0])
    with oldest.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO tenant (name, plan, isolation, status, created_at) "
                "VALUES ('acme', 'small', 'shared', 'active', '2026-01-01 00:00:00')"
            )
        )
    oldest.dispose()

    engine = db.open_engine(url)

    with db.session(engine) as session:
        assert tenancy.get_tenant(session, "acme").plan == "small"
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == revisions()[-1]


def test_opening_twice_is_harmless_and_uses_wal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'strata.db'}"
    db.open_engine(url).dispose()
    engine = db.open_engine(url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("SELECT count(*) FROM plan").scalar() == 3
