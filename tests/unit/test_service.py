"""The service layer's rules, on a real (migrated) SQLite database."""

from datetime import timedelta

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from tenants import apps, audit, db, instances, keys, tenancy, tokens
from tenants.enums import Role, TenantStatus
from tenants.errors import Conflict, Invalid, NotFound, QuotaExceeded
from tenants.models import ApiToken, App, Event, SshKey
from tenants.schemas import AppSpec, KeyCreate, TenantCreate, TokenCreate

DOMAIN = "localhost"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b"


@pytest.fixture
def session(engine: Engine) -> Session:
    with db.session(engine) as session:
        tenancy.create_tenant(session, "op", TenantCreate(name="acme"))
        yield session


def deploy(session: Session, app: str = "web", tenant: str = "acme", **spec: object) -> tuple[App, bool]:
    return apps.deploy(session, "op", tenant, app, AppSpec(**{"image": "strata/hello", **spec}), platform_domain=DOMAIN)


def events(session: Session, action: str) -> list[Event]:
    return [e for e in audit.list_events(session) if e.action == action]


def test_a_new_app_starts_at_revision_1_and_is_logged(session: Session) -> None:
    app, created = deploy(session, replicas=2)
    assert (created, app.revision, app.replicas) == (True, 1, 2)
    assert events(session, "app.create")[0].detail == {"app": "web", "revision": 1, "replicas": 2}


def test_a_change_of_spec_increments_the_revision(session: Session) -> None:
    deploy(session)
    app, created = deploy(session, env={"MODE": "fast"})
    assert (created, app.revision) == (False, 2)
    assert events(session, "app.deploy")[0].detail["changed"] == ["env"]


def test_scaling_alone_keeps_the_revision(session: Session) -> None:
    deploy(session)
    assert deploy(session, replicas=3)[0].revision == 1
    assert apps.scale(session, "op", "acme", "web", 1).revision == 1


def test_deploying_the_same_spec_again_changes_and_logs_nothing(session: Session) -> None:
    deploy(session)
    before = len(audit.list_events(session))
    app, _ = deploy(session)
    assert app.revision == 1
    assert len(audit.list_events(session)) == before


def test_restart_rolls_a_new_revision(session: Session) -> None:
    deploy(session)
    assert apps.restart(session, "op", "acme", "web").revision == 2


def test_a_deploy_past_the_quota_is_refused_and_changes_nothing(session: Session) -> None:
    deploy(session, replicas=4)
    with pytest.raises(QuotaExceeded, match="instances quota exceeded: this change needs 7"):
        deploy(session, "api", replicas=3)
    with pytest.raises(QuotaExceeded, match="memory quota exceeded"):
        deploy(session, replicas=4, memory_mib=512)  # 4 × 512 MiB > 1024 MiB of plan small
    session.rollback()
    assert [(a.name, a.memory_mib) for a in apps.list_apps(session, tenancy.get_tenant(session, "acme"))] == [
        ("web", 128)
    ]


def test_a_scale_past_the_quota_is_refused(session: Session) -> None:
    deploy(session)
    with pytest.raises(QuotaExceeded, match="plan 'small' allows 6"):
        apps.scale(session, "op", "acme", "web", 7)


def test_a_suspended_tenant_refuses_changes_until_resumed(session: Session) -> None:
    deploy(session)
    tenancy.set_status(session, "op", "acme", TenantStatus.SUSPENDED)
    with pytest.raises(Conflict, match="suspended"):
        apps.scale(session, "op", "acme", "web", 2)
    tenancy.set_status(session, "op", "acme", TenantStatus.ACTIVE)
    assert apps.scale(session, "op", "acme", "web", 2).replicas == 2


def test_names_are_unique_per_tenant_and_tenants_unique(session: Session) -> None:
    with pytest.raises(Conflict, match="exists already"):
        tenancy.create_tenant(session, "op", TenantCreate(name="acme"))
    tenancy.create_tenant(session, "op", TenantCreate(name="globex"))
    deploy(session)
    assert deploy(session, tenant="globex")[1] is True  # the same app name in another tenant


def test_an_unknown_plan_is_refused_listing_the_plans(session: Session) -> None:
    with pytest.raises(Invalid, match="small, medium, large"):
        tenancy.create_tenant(session, "op", TenantCreate(name="initech", plan="gold"))


def test_hostnames_are_exclusive_and_outside_the_platform_domain(session: Session) -> None:
    tenancy.create_tenant(session, "op", TenantCreate(name="globex"))
    deploy(session, hostnames=["shop.example.com"])
    with pytest.raises(Conflict, match="used by another app"):
        deploy(session, tenant="globex", hostnames=["shop.example.com"])
    with pytest.raises(Invalid, match="platform's domain"):
        deploy(session, tenant="globex", hostnames=["web.acme.localhost"])
    assert deploy(session, hostnames=["shop.example.com", "www.example.com"])[0].revision == 2


def test_an_env_the_platform_would_override_is_refused_and_changes_nothing(session: Session) -> None:
    """PORT is set to the app's port in every container: an env saying otherwise is refused, not ignored."""
    deploy(session, env={"PORT": "8080"})  # the same as the port: what runs is what is shown
    with pytest.raises(Invalid, match="PORT=8080 conflicts with the app's port 9999") as refused:
        deploy(session, env={"PORT": "8080"}, port=9999)
    assert refused.value.field == "env"
    with pytest.raises(Invalid, match="STRATA_TENANT is the platform's"):
        deploy(session, env={"STRATA_TENANT": "other"})
    assert apps.get_app(session, tenancy.get_tenant(session, "acme"), "web").port == 8080


def test_deleting_a_tenant_removes_what_it_owns_and_keeps_its_events(session: Session) -> None:
    deploy(session)
    keys.add_key(session, "op", KeyCreate(public_key=KEY, role=Role.TENANT, tenant="acme"))
    tokens.mint(session, "op", TokenCreate(role=Role.TENANT, tenant="acme"))

    tenancy.delete_tenant(session, "op", "acme")

    for table in (App, SshKey, ApiToken):
        assert session.exec(select(func.count()).select_from(table)).one() == 0
    assert {e.action for e in audit.list_events(session, tenant="acme")} >= {"tenant.create", "tenant.delete"}
    with pytest.raises(NotFound):
        tenancy.get_tenant(session, "acme")


def test_tokens_are_stored_hashed_and_authenticate_their_principal(session: Session) -> None:
    row, secret = tokens.mint(session, "op", TokenCreate(role=Role.TENANT, tenant="acme", name="ci"))
    assert secret not in row.token_hash and row.token_hash == tokens.digest(secret)
    principal = tokens.authenticate(session, secret)
    assert principal is not None
    assert (principal.role, principal.tenant, principal.actor) == (Role.TENANT, "acme", "acme/ci")
    assert tokens.authenticate(session, secret + "x") is None


def test_an_expired_or_revoked_token_no_longer_authenticates(session: Session) -> None:
    row, secret = tokens.mint(session, "op", TokenCreate(role=Role.OPERATOR, ttl_seconds=60))
    row.expires_at = row.expires_at - timedelta(seconds=61)
    session.commit()
    assert tokens.authenticate(session, secret) is None
    other, secret = tokens.mint(session, "op", TokenCreate(role=Role.OPERATOR))
    tokens.revoke(session, "op", other.id)
    assert tokens.authenticate(session, secret) is None


def test_credentials_must_name_their_tenant_exactly_when_they_are_a_tenants(session: Session) -> None:
    with pytest.raises(Invalid, match="needs the tenant"):
        tokens.mint(session, "op", TokenCreate(role=Role.TENANT))
    with pytest.raises(Invalid, match="belongs to no tenant"):
        keys.add_key(session, "op", KeyCreate(public_key=KEY, role=Role.OPERATOR, tenant="acme"))
    with pytest.raises(NotFound):
        tokens.mint(session, "op", TokenCreate(role=Role.TENANT, tenant="nobody"))


def test_a_key_is_registered_once(session: Session) -> None:
    keys.add_key(session, "op", KeyCreate(public_key=KEY, role=Role.OPERATOR))
    with pytest.raises(Conflict, match="registered already"):
        keys.add_key(session, "op", KeyCreate(public_key=KEY, role=Role.TENANT, tenant="acme"))


def test_the_desired_state_carries_the_plan_limits_and_zero_replicas_when_suspended(session: Session) -> None:
    deploy(session, replicas=2, hostnames=["shop.example.com"])
    [app] = instances.desired_apps(session)
    assert (app.tenant, app.name, app.replicas, app.hostnames) == ("acme", "web", 2, ["shop.example.com"])
    assert (app.requests_per_second, app.burst, app.max_body_mib) == (100, 200, 10)  # plan small
    tenancy.set_status(session, "op", "acme", TenantStatus.SUSPENDED)
    assert instances.desired_apps(session)[0].replicas == 0
