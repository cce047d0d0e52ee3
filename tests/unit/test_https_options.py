"""An app's HTTPS options travel from its row to the front door's RouteSpec; older databases get them off."""

from sqlalchemy import Engine, create_engine, text

from hosting.paas import serving
from tenants import apps, db, instances, tenancy
from tenants.routes import RouteSpec
from tenants.schemas import AppSpec, TenantCreate
from tests.unit.desired import desired_app


def test_routes_carry_the_https_options_of_each_app() -> None:
    desired = [desired_app("web", https_redirect=True, hsts=True), desired_app("api")]
    web, api = serving.routes(desired, [])
    assert (web.app, web.endpoints, web.redirect_https, web.hsts) == ("web", (), True, True)
    assert (api.app, api.redirect_https, api.hsts) == ("api", False, False)


def test_a_route_spec_made_with_its_first_seven_fields_is_plain_http_friendly() -> None:
    spec = RouteSpec("acme", "web", (), ("127.0.0.1:8080",), 100, 200, 1 << 20)
    assert (spec.redirect_https, spec.hsts) == (False, False)


def test_the_desired_state_reads_the_https_options_from_the_database(engine: Engine) -> None:
    with db.session(engine) as session:
        tenancy.create_tenant(session, "operator", TenantCreate(name="acme"))
        spec = AppSpec(image="strata/hello", https_redirect=True)
        apps.deploy(session, "operator", "acme", "web", spec, platform_domain="x")
        apps.deploy(session, "operator", "acme", "api", AppSpec(image="strata/hello", hsts=True), platform_domain="x")
        read = {app.name: (app.https_redirect, app.hsts) for app in instances.desired_apps(session)}
    assert read == {"api": (False, True), "web": (True, False)}


def test_apps_of_an_older_database_get_both_options_off(empty_database: str) -> None:
    url = empty_database
    before = create_engine(url)
    db.upgrade(before, "0006")
    with before.begin() as connection:
        for statement in (
            "INSERT INTO tenant (id, name, plan, isolation, status, created_at) "
            "VALUES (7, 'acme', 'small', 'shared', 'active', '2026-01-01 00:00:00')",
            "INSERT INTO app (id, tenant_id, name, image, port, replicas, cpu_millicores, memory_mib, env, "
            "hostnames, revision, created_at, updated_at) VALUES (3, 7, 'web', 'strata/hello', 8080, 1, 250, 128, "
            "'{}', '[]', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
        ):
            connection.execute(text(statement))
    before.dispose()

    engine = db.open_engine(url)
    with db.session(engine) as session:
        (web,) = instances.desired_apps(session)
    engine.dispose()
    assert (web.name, web.https_redirect, web.hsts) == ("web", False, False)
