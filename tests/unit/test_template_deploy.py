"""A catalog template's deploy on a real (migrated) SQLite database: judged whole before anything is made, its
services made only when missing, its app started only once bound, and a second deploy changing only what changed."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from tenants import apps, audit, db, services, template_deploy, tenancy
from tenants.catalog import Template, TemplateDeploy, get_template
from tenants.enums import AppKind, TenantStatus
from tenants.errors import Conflict, QuotaExceeded
from tenants.schemas import AppSpec, TenantCreate
from tenants.secrets import SecretBox

GUESTBOOK = get_template("guestbook")


@pytest.fixture
def box(tmp_path: Path) -> SecretBox:
    return SecretBox(tmp_path / "secret.key")


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with db.session(engine) as session:
        tenancy.create_tenant(session, "op", TenantCreate(name="acme"))  # small: 3 apps, 6 instances, 2000m, 1 GiB
        yield session


def deploy(session: Session, box: SecretBox, body: TemplateDeploy, template: Template = GUESTBOOK) -> list[str]:
    """What the API does: check, make the missing services (their rows: the filesystem is the API's), finish.
    Returns the services it made."""
    steps = template_deploy.check(session, "acme", template, body)
    for service in steps.missing:
        owner = services.check_create(session, "acme", service.name, service.size_mib)
        services.record_create(session, box, "op", owner, service.name, service.kind, service.size_mib, "local")
    template_deploy.finish(session, box, "op", steps, [s.name for s in steps.missing], domain="localhost")
    return [s.name for s in steps.missing]


def actions(session: Session) -> list[str]:
    return [event.action for event in reversed(audit.list_events(session, tenant="acme", limit=50))]


def test_a_new_app_gets_its_service_made_and_starts_only_bound(session: Session, box: SecretBox) -> None:
    assert deploy(session, box, TemplateDeploy(app="guestbook", env={"TITLE": "Visitors"})) == ["db"]

    acme = tenancy.get_tenant(session, "acme")
    app = apps.get_app(session, acme, "guestbook")
    assert (app.revision, app.replicas, app.env) == (2, 2, {"TITLE": "Visitors"})
    assert list(app.sealed_env) == ["DATABASE_URL"]
    [db_service] = [s for s, _ in services.list_services(session, acme)]
    assert [a.name for a in services.bound_apps(session, db_service)] == ["guestbook"]
    # revision 1 had no instance: none ever ran without its DATABASE_URL
    assert actions(session)[-5:] == ["service.create", "app.create", "service.bind", "app.scale", "catalog.deploy"]
    [made] = audit.list_events(session, tenant="acme", limit=1)
    assert made.detail == {"template": "guestbook", "app": "guestbook", "services": ["db"], "created": ["db"]}


def test_deploying_it_again_makes_nothing_and_changes_only_what_changed(session: Session, box: SecretBox) -> None:
    deploy(session, box, TemplateDeploy(app="guestbook"))
    before = actions(session)
    assert deploy(session, box, TemplateDeploy(app="guestbook")) == []
    assert actions(session)[len(before) :] == ["catalog.deploy"]  # the same spec: no new revision

    deploy(session, box, TemplateDeploy(app="guestbook", env={"TITLE": "Visitors"}))
    app = apps.get_app(session, tenancy.get_tenant(session, "acme"), "guestbook")
    assert (app.revision, app.env, list(app.sealed_env)) == (3, {"TITLE": "Visitors"}, ["DATABASE_URL"])


def test_a_second_app_of_the_template_shares_the_tenants_service(session: Session, box: SecretBox) -> None:
    deploy(session, box, TemplateDeploy(app="guestbook", replicas=1))
    assert deploy(session, box, TemplateDeploy(app="visitors", replicas=1)) == []
    [db_service] = [s for s, _ in services.list_services(session, tenancy.get_tenant(session, "acme"))]
    assert [a.name for a in services.bound_apps(session, db_service)] == ["guestbook", "visitors"]


def test_an_existing_app_is_bound_in_the_revision_after_its_deploy(session: Session, box: SecretBox) -> None:
    own = AppSpec(image="strata/hello", env={"API_KEY": "kept"}, hostnames=["gb.example.com"])
    apps.deploy(session, "op", "acme", "guestbook", own, platform_domain="localhost")
    assert deploy(session, box, TemplateDeploy(app="guestbook")) == ["db"]
    app = apps.get_app(session, tenancy.get_tenant(session, "acme"), "guestbook")
    assert (app.image, app.revision, app.replicas, list(app.sealed_env)) == (
        "strata/guestbook", 3, 1, ["DATABASE_URL"]
    )  # fmt: skip
    # what was set outside the template stays; the template's defaults fill what the app lacked
    assert app.env == {"TITLE": "Guestbook", "API_KEY": "kept"} and app.hostnames == ["gb.example.com"]
    deploy(session, box, TemplateDeploy(app="guestbook", env={"TITLE": "Ours"}, replicas=2))
    session.refresh(app)
    assert (app.env, app.replicas) == ({"TITLE": "Ours", "API_KEY": "kept"}, 2)


def test_the_quotas_count_the_service_and_the_app_together_and_nothing_is_made(session: Session) -> None:
    # six instances of guestbook fit the small plan's 6, and so does db's one; not the seven together
    with pytest.raises(QuotaExceeded, match="instances quota exceeded: this change needs 7 in all"):
        template_deploy.check(session, "acme", GUESTBOOK, TemplateDeploy(app="guestbook", replicas=6))
    acme = tenancy.get_tenant(session, "acme")
    assert apps.list_apps(session, acme) == [] and services.list_services(session, acme) == []


@pytest.mark.parametrize(
    ("app", "taken", "why"),
    [
        ("db", None, "the template's postgres service is named 'db': name the app otherwise"),
        ("guestbook", "db", "has an app named 'db' already"),
    ],
)
def test_a_name_taken_is_refused_before_anything_is_made(
    session: Session, app: str, taken: str | None, why: str
) -> None:
    if taken is not None:
        apps.deploy(session, "op", "acme", taken, AppSpec(image="strata/hello"), platform_domain="localhost")
    with pytest.raises(Conflict, match=why):
        template_deploy.check(session, "acme", GUESTBOOK, TemplateDeploy(app=app))


def test_an_app_with_a_database_url_of_its_own_is_not_bound_over_it(session: Session, box: SecretBox) -> None:
    deploy(session, box, TemplateDeploy(app="guestbook", replicas=1))
    spec = AppSpec(image="strata/hello", env={"DATABASE_URL": "postgresql://elsewhere/x"})
    apps.deploy(session, "op", "acme", "legacy", spec, platform_domain="localhost")
    with pytest.raises(Conflict, match="sets DATABASE_URL in its env: unset it first"):
        template_deploy.check(session, "acme", GUESTBOOK, TemplateDeploy(app="legacy", replicas=1))


def test_a_template_without_services_is_a_deploy(session: Session, box: SecretBox) -> None:
    hello = get_template("hello")
    assert deploy(session, box, TemplateDeploy(app="greeter", env={"GREETING": "bonjour"}), hello) == []
    app = apps.get_app(session, tenancy.get_tenant(session, "acme"), "greeter")
    assert (app.revision, app.replicas, app.env, app.sealed_env) == (1, 2, {"GREETING": "bonjour"}, {})


def test_a_suspended_tenant_deploys_nothing(session: Session) -> None:
    tenancy.set_status(session, "op", "acme", TenantStatus.SUSPENDED)
    with pytest.raises(Conflict, match="is suspended"):
        template_deploy.check(session, "acme", GUESTBOOK, TemplateDeploy(app="guestbook"))


def test_a_service_the_tenant_has_is_not_made_again(session: Session, box: SecretBox) -> None:
    owner = services.check_create(session, "acme", "db", 64)
    services.record_create(session, box, "op", owner, "db", AppKind.POSTGRES, 64, "local")
    steps = template_deploy.check(session, "acme", GUESTBOOK, TemplateDeploy(app="guestbook"))
    assert (steps.services, steps.missing, steps.spec.replicas) == (["db"], [], 2)


def test_an_app_bound_elsewhere_is_refused_before_its_missing_service_is_made(session: Session, box: SecretBox) -> None:
    apps.deploy(session, "op", "acme", "guestbook", AppSpec(image="strata/hello"), platform_domain="localhost")
    owner = services.check_create(session, "acme", "other", 64)
    services.record_create(session, box, "op", owner, "other", AppKind.POSTGRES, 64, "local")
    services.bind(session, box, "op", "acme", "other", "guestbook")
    with pytest.raises(Conflict, match="has a DATABASE_URL from another service"):
        deploy(session, box, TemplateDeploy(app="guestbook"))
    assert [s.name for s, _ in services.list_services(session, tenancy.get_tenant(session, "acme"))] == ["other"]
