"""The control API over real HTTP: the daemon's unix socket (through the typed client) and its TCP port."""

import json
import stat

import httpx
import pytest

from tenants.client import ApiError, StrataClient
from tenants.enums import Role, TenantStatus
from tenants.schemas import AppSpec, KeyCreate, TenantCreate, TokenCreate
from tests.harness import Daemon

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b"


def refused(call, status: int, code: str | None = None) -> ApiError:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as caught:
        call()
    assert caught.value.status == status, caught.value.message
    if code:
        assert caught.value.code == code
    return caught.value


def tenant_with_token(daemon: Daemon, name: str) -> StrataClient:
    with daemon.operator() as operator:
        operator.create_tenant(TenantCreate(name=name))
        operator.deploy(name, "web", AppSpec(image="strata/hello"))
        token = operator.create_token(TokenCreate(role=Role.TENANT, tenant=name)).token
    return daemon.client(token)


def test_healthz_answers_without_a_token(daemon: Daemon) -> None:
    with daemon.client() as anonymous:
        assert anonymous.health().status == "ok"


def test_no_token_or_a_wrong_one_is_401(daemon: Daemon) -> None:
    with daemon.client() as anonymous:
        error = refused(anonymous.tenants, 401, "unauthorized")
    assert "token" in error.message
    with daemon.client("st_not-a-real-token") as forged:
        refused(forged.tenants, 401)


def test_the_socket_and_the_operator_token_are_private_to_their_owner(daemon: Daemon) -> None:
    assert stat.S_IMODE((daemon.home / "api.sock").stat().st_mode) == 0o600
    assert stat.S_IMODE((daemon.home / "operator.token").stat().st_mode) == 0o600


def test_the_api_is_served_on_tcp_too_with_its_openapi_schema(daemon: Daemon) -> None:
    schema = httpx.get(f"{daemon.url}/openapi.json").json()
    assert {"/tenants", "/tenants/{tenant}/apps/{app}", "/keys", "/tokens", "/events", "/healthz"} <= set(
        schema["paths"]
    )
    response = httpx.get(f"{daemon.url}/tenants", headers={"Authorization": f"Bearer {daemon.operator_token}"})
    assert response.status_code == 200


def test_an_operator_creates_deploys_scales_restarts_and_deletes(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        created = api.deploy(unique, "web", AppSpec(image="strata/hello", replicas=2, health_path="/healthz"))
        assert (created.tenant, created.revision, created.replicas) == (unique, 1, 2)
        assert api.deploy(unique, "web", AppSpec(image="strata/hello:2", replicas=2)).revision == 2
        assert api.scale(unique, "web", 5).replicas == 5
        assert api.restart(unique, "web").revision == 3
        assert api.tenant(unique).usage.instances == 5
        api.delete_app(unique, "web")
        assert api.apps(unique) == []
        actions = [event.action for event in api.events(unique) if event.actor != "reconciler"]
        assert actions == ["app.delete", "app.restart", "app.scale", "app.deploy", "app.create", "tenant.create"]


def test_deploy_answers_201_when_it_creates_and_200_when_it_updates(daemon: Daemon, unique: str) -> None:
    headers = {"Authorization": f"Bearer {daemon.operator_token}"}
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
    url = f"{daemon.url}/tenants/{unique}/apps/web"
    assert httpx.put(url, json={"image": "strata/hello"}, headers=headers).status_code == 201
    assert httpx.put(url, json={"image": "strata/hello"}, headers=headers).status_code == 200


def test_suspend_and_resume(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
        assert api.set_tenant_status(unique, TenantStatus.SUSPENDED).status == "suspended"
        refused(lambda: api.deploy(unique, "web", AppSpec(image="strata/hello")), 409, "conflict")
        assert api.set_tenant_status(unique, TenantStatus.ACTIVE).status == "active"
        api.deploy(unique, "web", AppSpec(image="strata/hello"))


def test_a_quota_refusal_names_the_quota_and_the_numbers(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
        error = refused(lambda: api.deploy(unique, "web", AppSpec(image="strata/hello", replicas=7)), 403)
    assert error.code == "quota_exceeded"
    assert "instances quota exceeded: this change needs 7 in all, plan 'small' allows 6" in error.message


def test_a_tenant_token_sees_and_changes_only_its_tenant(daemon: Daemon, unique: str) -> None:
    other = f"{unique}-other"
    mine = tenant_with_token(daemon, unique)
    tenant_with_token(daemon, other).close()
    with mine:
        assert [t.name for t in mine.tenants()] == [unique]
        assert [a.name for a in mine.apps(unique)] == ["web"]
        assert mine.scale(unique, "web", 2).replicas == 2

        for call in (
            lambda: mine.tenant(other),
            lambda: mine.apps(other),
            lambda: mine.app(other, "web"),
            lambda: mine.deploy(other, "web", AppSpec(image="strata/evil")),
            lambda: mine.scale(other, "web", 0),
            lambda: mine.restart(other, "web"),
            lambda: mine.delete_app(other, "web"),
            lambda: mine.events(other),
            lambda: mine.keys(other),
            lambda: mine.tokens(other),
            lambda: mine.add_key(KeyCreate(public_key=KEY, role=Role.TENANT, tenant=other)),
            lambda: mine.create_token(TokenCreate(role=Role.TENANT, tenant=other)),
        ):
            assert refused(call, 404).message == f"no tenant named {other!r}"

        assert {event.tenant for event in mine.events()} == {unique}
        assert {token.tenant for token in mine.tokens()} == {unique}
        refused(lambda: mine.create_tenant(TenantCreate(name=f"{unique}-new")), 403, "forbidden")
        refused(lambda: mine.set_tenant_status(unique, TenantStatus.SUSPENDED), 403)
        refused(lambda: mine.delete_tenant(other), 404)  # another tenant is as absent as one that never existed
        refused(lambda: mine.create_token(TokenCreate(role=Role.OPERATOR)), 403)

    with daemon.operator() as api:
        untouched = api.app(other, "web")
        assert (untouched.image, untouched.replicas, untouched.revision) == ("strata/hello", 1, 1)


def test_a_tenant_may_not_remove_another_tenants_credentials(daemon: Daemon, unique: str) -> None:
    other = f"{unique}-other"
    tenant_with_token(daemon, other).close()
    with daemon.operator() as api:
        their_token = api.tokens(other)[0].id
    with tenant_with_token(daemon, unique) as mine:
        refused(lambda: mine.revoke_token(their_token), 404)
    with daemon.operator() as api:
        assert [token.id for token in api.tokens(other)] == [their_token]


def test_a_tenant_manages_its_own_keys_and_tokens(daemon: Daemon, unique: str) -> None:
    with tenant_with_token(daemon, unique) as mine:
        key = mine.add_key(KeyCreate(public_key=KEY.replace("a@b", unique), role=Role.TENANT, tenant=unique))
        assert key.fingerprint.startswith("SHA256:")
        mine.remove_key(key.id)
        created = mine.create_token(TokenCreate(role=Role.TENANT, tenant=unique, name="ci"))
        with daemon.client(created.token) as ci:
            assert [t.name for t in ci.tenants()] == [unique]
        mine.revoke_token(created.id)
        with daemon.client(created.token) as ci:
            refused(ci.tenants, 401)


@pytest.mark.parametrize(
    "method, path, body, field",
    [
        ("POST", "/tenants", {"name": "Bad_Name"}, "name"),
        ("POST", "/tenants", {"name": "admin"}, "name"),
        ("POST", "/tenants", {"name": "a" * 10_000}, "name"),
        ("POST", "/tenants", {"name": "ok", "isolation": "none"}, "isolation"),
        ("POST", "/tenants", {"name": "ok", "plan": "gold"}, "plan"),
        ("POST", "/tenants", {"name": "ok", "surprise": 1}, "surprise"),
        ("PUT", "/tenants/{t}/apps/web", {"image": "../../etc/passwd"}, "image"),
        ("PUT", "/tenants/{t}/apps/web", {"image": "x", "replicas": -1}, "replicas"),
        ("PUT", "/tenants/{t}/apps/web", {"image": "x", "port": 70000}, "port"),
        ("PUT", "/tenants/{t}/apps/web", {"image": "x", "env": {"A=B": "c"}}, "env"),
        ("PUT", "/tenants/{t}/apps/web", {"image": "x", "health_path": "/ HTTP/1.1\r\nX: y"}, "health_path"),
        ("PUT", "/tenants/{t}/apps/web", {"image": "x", "cpu_millicores": "lots"}, "cpu_millicores"),
        ("PUT", "/tenants/{t}/apps/Web", {"image": "x"}, "app"),
        ("PUT", "/tenants/{t}/apps/web", {"image": "x", "hostnames": ["web.{t}.localhost"]}, "hostnames"),
        ("POST", "/tenants/{t}/apps/web/scale", {"replicas": 1000}, "replicas"),
        ("POST", "/keys", {"public_key": "not a key", "role": "operator"}, "public_key"),
        ("POST", "/tokens", {"role": "tenant"}, "tenant"),
        ("POST", "/tokens", {"role": "tenant", "tenant": "{t}", "ttl_seconds": 0}, "ttl_seconds"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field_and_changes_nothing(
    daemon: Daemon, unique: str, method: str, path: str, body: dict, field: str
) -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
        before = len(api.events(limit=1000))
    filled = json.loads(json.dumps(body).replace("{t}", unique))

    response = httpx.request(
        method,
        daemon.url + path.replace("{t}", unique),
        json=filled,
        headers={"Authorization": f"Bearer {daemon.operator_token}"},
    )

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid", field)
    assert error["message"]
    with daemon.operator() as api:
        assert len(api.events(limit=1000)) == before
        assert api.apps(unique) == []


def test_unknown_paths_and_methods_answer_in_the_error_shape(daemon: Daemon) -> None:
    headers = {"Authorization": f"Bearer {daemon.operator_token}"}
    missing = httpx.get(f"{daemon.url}/nowhere", headers=headers)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    wrong = httpx.patch(f"{daemon.url}/tenants", headers=headers)
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (405, "method_not_allowed")
    garbage = httpx.post(f"{daemon.url}/tenants", headers=headers, content=b"{not json")
    assert garbage.status_code == 422
