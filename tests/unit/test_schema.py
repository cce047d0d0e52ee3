"""The schema is created and upgraded on open, keeping what an older database holds."""

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, text
from sqlmodel import SQLModel

from tenants import apps, db, tenancy
from tenants.schemas import AppSpec, TenantCreate


def revisions() -> list[str]:
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    return [script.revision for script in reversed(list(ScriptDirectory.from_config(config).walk_revisions()))]


def test_the_migrations_build_exactly_the_models_schema(empty_database: str) -> None:
    engine = db.open_engine(empty_database)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), SQLModel.metadata) == []
    engine.dispose()


def test_an_older_database_is_upgraded_with_its_data(empty_database: str) -> None:
    url = empty_database
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
    engine.dispose()


def test_opening_twice_is_harmless_and_uses_wal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'strata.db'}"
    db.open_engine(url).dispose()
    engine = db.open_engine(url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("SELECT count(*) FROM plan").scalar() == 3


def test_rebuilding_tables_keeps_the_rows_that_refer_to_them(tmp_path: Path) -> None:
    """0005 copies every table with an id into a new one; nothing may cascade from dropping the old ones."""
    url = f"sqlite:///{tmp_path / 'strata.db'}"
    before = create_engine(url)
    db.upgrade(before, "0004")
    with before.begin() as connection:
        connection.execute(text("PRAGMA foreign_keys=ON"))
        for statement in (
            "INSERT INTO tenant (id, name, plan, isolation, status, created_at) "
            "VALUES (7, 'acme', 'small', 'shared', 'active', '2026-01-01 00:00:00')",
            "INSERT INTO app (id, tenant_id, name, image, port, replicas, cpu_millicores, memory_mib, env, "
            "hostnames, revision, created_at, updated_at) VALUES (3, 7, 'web', 'strata/hello', 8080, 1, 250, 128, "
            "'{}', '[]', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
            "INSERT INTO instance (id, app_id, node, container_id, revision, state, restarts, created_at) "
            "VALUES ('abc123', 3, 'local', 'c0ffee', 1, 'ready', 0, '2026-01-01 00:00:00')",
            "INSERT INTO apitoken (id, token_hash, name, role, tenant_id, created_at) "
            "VALUES (5, 'h', 'ci', 'tenant', 7, '2026-01-01 00:00:00')",
        ):
            connection.execute(text(statement))
    before.dispose()

    engine = db.open_engine(url)

    with engine.connect() as connection:
        rows = [
            connection.execute(text(f"SELECT count(*) FROM {table}")).scalar()
            for table in ("tenant", "app", "instance", "apitoken")
        ]
        assert rows == [1, 1, 1, 1]
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_ids_of_deleted_rows_are_never_reused(engine: Engine) -> None:
    """Whatever holds an app's or a token's id (the reconciler's backoff, a session) can't mistake a new row
    for a deleted one (SQLite reuses the highest id without AUTOINCREMENT)."""
    with db.session(engine) as session:
        tenant = tenancy.create_tenant(session, "operator", TenantCreate(name="acme"))
        first, _ = apps.deploy(session, "operator", "acme", "web", AppSpec(image="strata/hello"), platform_domain="x")
        apps.delete(session, "operator", "acme", "web")
        second, _ = apps.deploy(session, "operator", "acme", "api", AppSpec(image="strata/hello"), platform_domain="x")
        assert second.id != first.id
        tenancy.delete_tenant(session, "operator", tenant.name)
        again = tenancy.create_tenant(session, "operator", TenantCreate(name="globex"))
        assert again.id != tenant.id
