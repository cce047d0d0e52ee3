"""The records of a credential rotation on a real (migrated) SQLite database: one rotation at a time, the bound
apps' new revisions, which of them still run old instances, and the login's SCRAM verifier."""

import base64
import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from hosting.paas.service_credentials import add_login_sql, converge_sql, retire_login_sql, scram_verifier
from tenants import apps, db, services, tenancy
from tenants.enums import AppKind, InstanceState
from tenants.models import Instance, saved_id
from tenants.schemas import AppSpec, TenantCreate
from tenants.secrets import SecretBox


@pytest.fixture
def box(tmp_path: Path) -> SecretBox:
    return SecretBox(tmp_path / "secret.key")


@pytest.fixture
def session(engine: Engine, box: SecretBox) -> Iterator[Session]:
    with db.session(engine) as session:
        tenancy.create_tenant(session, "op", TenantCreate(name="acme"))
        tenant = services.check_create(session, "acme", "db", 64)
        services.record_create(session, box, "op", tenant, "db", AppKind.POSTGRES, 64, "local")
        apps.deploy(session, "op", "acme", "web", AppSpec(image="strata/hello"), platform_domain="localhost")
        services.bind(session, box, "op", "acme", "db", "web")
        yield session


def instance(session: Session, app: str, revision: int) -> None:
    row = apps.get_app(session, tenancy.get_tenant(session, "acme"), app)
    session.add(
        Instance(
            id=f"{app}-{revision}",
            app_id=saved_id(row),
            node="local",
            container_id=f"c{revision}",
            revision=revision,
            state=InstanceState.READY,
        )  # fmt: skip
    )
    session.commit()


def test_a_rotation_gives_the_bound_apps_the_new_login_in_a_new_revision_one_rotation_at_a_time(
    session: Session, box: SecretBox
) -> None:
    web = apps.get_app(session, tenancy.get_tenant(session, "acme"), "web")
    before = web.revision
    assert services.begin_rotation(session, box, "op", "acme", "db", "app", "app_1", "new-password")
    session.refresh(web)
    assert web.revision == before + 1
    assert box.decrypt(web.sealed_env[services.DATABASE_URL]) == "postgresql://app_1:new-password@db:5432/app"
    service = services.get_service(session, tenancy.get_tenant(session, "acme"), "db")
    assert (service.username, service.retiring) == ("app_1", "app")
    # a second rotation, begun from what it read before the first committed, changes nothing
    assert not services.begin_rotation(session, box, "op", "acme", "db", "app", "app_2", "other")
    assert not services.begin_rotation(session, box, "op", "acme", "db", "app_1", "app_2", "other")  # app retiring
    session.refresh(web)
    assert web.revision == before + 1


def test_an_app_still_rolls_while_an_instance_of_an_older_revision_is_left(session: Session, box: SecretBox) -> None:
    instance(session, "web", 2)
    assert services.begin_rotation(session, box, "op", "acme", "db", "app", "app_1", "pw")
    assert services.still_rolling(session, box, "acme", "db") == ["web"]
    instance(session, "web", 3)
    assert services.still_rolling(session, box, "acme", "db") == ["web"]  # the new one is up, the old one not gone
    session.delete(session.get(Instance, "web-2"))
    session.commit()
    assert services.still_rolling(session, box, "acme", "db") == []
    services.finish_rotation(session, "op", "acme", "db", "app")
    assert services.get_service(session, tenancy.get_tenant(session, "acme"), "db").retiring is None


def test_an_app_bound_with_the_login_a_rotation_replaces_is_given_the_new_one(session: Session, box: SecretBox) -> None:
    web = apps.get_app(session, tenancy.get_tenant(session, "acme"), "web")
    old_url = web.sealed_env[services.DATABASE_URL]
    assert services.begin_rotation(session, box, "op", "acme", "db", "app", "app_1", "pw")
    web.sealed_env = {**web.sealed_env, services.DATABASE_URL: old_url}  # as a bind racing the rotation seals it
    session.commit()
    revision = web.revision
    assert services.still_rolling(session, box, "acme", "db") == ["web"]
    session.refresh(web)
    assert web.revision == revision + 1
    assert box.decrypt(web.sealed_env[services.DATABASE_URL]) == "postgresql://app_1:pw@db:5432/app"
    assert services.still_rolling(session, box, "acme", "db") == []  # no instance of an older revision is left


def test_the_verifier_is_what_postgresql_checks_a_scram_login_against() -> None:
    salt = b"0123456789abcdef"
    verifier = scram_verifier("pencil", salt=salt, iterations=4096)
    method, _, rest = verifier.partition("$")
    iterations_salt, _, keys = rest.partition("$")
    stored, _, server = keys.partition(":")
    assert (method, iterations_salt) == ("SCRAM-SHA-256", f"4096:{base64.b64encode(salt).decode()}")
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)  # RFC 5802, computed the long way round
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    assert base64.b64decode(stored) == hashlib.sha256(client_key).digest()
    assert base64.b64decode(server) == hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    assert scram_verifier("pencil") != scram_verifier("pencil")  # a fresh salt each time


def test_the_sql_holds_no_password_and_keeps_the_owner() -> None:
    made = add_login_sql("app_1", "the-password")
    assert "the-password" not in made and "SCRAM-SHA-256$4096:" in made and 'GRANT "app" TO "app_1"' in made
    assert 'CREATE ROLE "app_1" NOLOGIN' in made  # it may log in once the rotation is recorded
    assert "DROP ROLE" not in retire_login_sql("app") and "NOLOGIN" in retire_login_sql("app")
    assert 'DROP ROLE "app_1"' in retire_login_sql("app_1")
    assert '"x""y"' in retire_login_sql('x"y') and "'it''s'" in retire_login_sql("it's")
    restored = converge_sql("app_1", "the-password", "app_0")
    assert "the-password" not in restored and "NOT IN ('postgres', 'app_1', 'app_0')" in restored
