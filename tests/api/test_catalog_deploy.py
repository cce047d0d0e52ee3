"""A catalog template deployed through the control API (`POST /tenants/T/catalog/TEMPLATE/deploy`), on a daemon with
no Docker engine: what is refused is refused whole, before anything is made. tests/paas/test_catalog.py deploys
the guestbook for real."""

import pytest

from tenants.catalog import TemplateDeploy
from tenants.client import ApiError
from tenants.enums import Role
from tenants.schemas import TenantCreate, TokenCreate
from tests.harness import Daemon


def refused(call, status: int, code: str) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as caught:
        call()
    assert (caught.value.status, caught.value.code) == (status, code), caught.value.message
    return caught.value.message


def test_a_template_without_services_deploys_its_app_with_the_forms_values(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
        done = api.deploy_template(unique, "hello", TemplateDeploy(app="greeter", env={"GREETING": "bonjour"}))
        assert (done.created, done.services) == ([], [])
        assert (done.app.name, done.app.image, done.app.replicas, done.app.env) == (
            "greeter", "strata/hello", 2, {"GREETING": "bonjour"}
        )  # fmt: skip
        assert api.app(unique, "greeter").revision == 1
        assert "catalog.deploy" in [event.action for event in api.events(unique)]


def test_a_template_deploy_past_the_quota_is_refused_whole(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="small"))
        why = refused(
            lambda: api.deploy_template(unique, "guestbook", TemplateDeploy(app="guestbook", replicas=6)),
            403,
            "quota_exceeded",
        )
        assert why.startswith("instances quota exceeded: this change needs 7 in all")  # its db counted too
        assert (api.apps(unique), api.services(unique), api.volumes(unique)) == ([], [], [])


def test_names_and_values_the_template_cannot_take_are_refused(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
        why = refused(lambda: api.deploy_template(unique, "nosuch", TemplateDeploy(app="x")), 404, "not_found")
        assert "no template named 'nosuch'" in why
        why = refused(lambda: api.deploy_template(unique, "guestbook", TemplateDeploy(app="db")), 409, "conflict")
        assert "name the app otherwise" in why
        body = TemplateDeploy(app="guestbook", env={"DATABASE_URL": "postgresql://elsewhere/x"})
        why = refused(lambda: api.deploy_template(unique, "guestbook", body), 422, "invalid")
        assert "has no env field DATABASE_URL" in why
        body = TemplateDeploy(app="guestbook", image="Not An Image")
        assert "is not an image reference" in refused(
            lambda: api.deploy_template(unique, "guestbook", body), 422, "invalid"
        )
        assert api.apps(unique) == []


def test_the_catalog_lists_the_services_a_template_makes(daemon: Daemon) -> None:
    with daemon.operator() as api:
        [guestbook] = [t for t in api.catalog() if t.name == "guestbook"]
    assert [(s.name, s.kind, s.size_mib) for s in guestbook.services] == [("db", "postgres", 256)]


def test_a_platform_without_volumes_makes_no_service_and_says_so(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
        why = refused(lambda: api.deploy_template(unique, "guestbook", TemplateDeploy(app="gb")), 409, "conflict")
        assert "keeps no volumes" in why
        assert (api.apps(unique), api.services(unique)) == ([], [])


def test_a_tenants_token_deploys_templates_to_its_own_tenant_only(daemon: Daemon, unique: str) -> None:
    other = f"{unique}-other"
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
        api.create_tenant(TenantCreate(name=other))
        token = api.create_token(TokenCreate(role=Role.TENANT, tenant=unique)).token
    with daemon.client(token) as mine:
        assert mine.deploy_template(unique, "hello", TemplateDeploy(app="web")).app.name == "web"
        refused(lambda: mine.deploy_template(other, "hello", TemplateDeploy(app="web")), 404, "not_found")
    with daemon.operator() as api:
        assert api.apps(other) == []
