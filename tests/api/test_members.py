"""Members and roles through the real API: every operation of the OpenAPI schema tried by each role on its own
tenant and on another, allowed exactly where `tenants.roles` says; and what a member's change does at once."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest.mock import MagicMock

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import Engine

from strata.api.app import create_app
from strata.api.deps import require_operator
from strata.api.exec_routes import FORBIDDEN, NOT_FOUND, _find
from tenants import apps, db, members, roles, tenancy, tokens
from tenants.enums import MemberRole, Role
from tenants.schemas import AppSpec, KeyCreate, MemberCreate, TenantCreate, TokenCreate
from tests.api.test_api import KEY, refused
from tests.harness import Daemon

ROLES = list(MemberRole)
PLACEHOLDER = {name: "999999999" for name in ("key_id", "token_id", "build_id", "backup")}  # ids nothing has
ABSENT = "nothing-here"  # any other name in a path: nothing of the tenant is so named


@dataclass(frozen=True)
class Team:
    tenant: str
    other: str
    tokens: dict[MemberRole, str]


@pytest.fixture
def team(daemon: Daemon, unique: str) -> Iterator[Team]:
    """A tenant with an app and a member of each role (a token each), and another tenant with an app."""
    other = f"{unique}-other"
    with daemon.operator() as api:
        for name in (unique, other):
            api.create_tenant(TenantCreate(name=name))
            api.deploy(name, "web", AppSpec(image="strata/hello"))
        tokens = {}
        for role in ROLES:
            api.add_member(unique, MemberCreate(name=f"m-{role}", role=role))
            tokens[role] = api.create_token(
                TokenCreate(role=Role.TENANT, tenant=unique, member=f"m-{role}", name=f"{role}-token")
            ).token
    yield Team(unique, other, tokens)
    with daemon.operator() as api:
        for name in (unique, other):
            api.delete_tenant(name)


def operations() -> list[tuple[str, str, bool]]:
    """(method, path template, only an operator may) of every HTTP operation of the API but /healthz."""
    app = create_app(MagicMock())
    found = []
    for route in _routes(app.routes):
        operator_only = any(d.call is require_operator for d in _dependencies(route.dependant))
        for method in sorted(route.methods - {"HEAD"}):
            if route.path != "/healthz":
                found.append((method, route.path, operator_only))
    return found


def _routes(routes: list) -> Iterator[APIRoute]:  # type: ignore[type-arg]
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from _routes(route.original_router.routes)


def _dependencies(dependant):  # type: ignore[no-untyped-def]
    for dependency in dependant.dependencies:
        yield dependency
        yield from _dependencies(dependency)


def filled(template: str, tenant: str) -> str:
    """The path with `tenant` for {tenant}, a number nothing has for ids, and a name nothing has for the rest."""
    return re.sub(r"\{(\w+)\}", lambda m: tenant if m[1] == "tenant" else PLACEHOLDER.get(m[1], ABSENT), template)


def test_the_schemas_operations_are_the_routes_checked_here(daemon: Daemon) -> None:
    schema = httpx.get(f"{daemon.url}/openapi.json").json()
    listed = {(method.upper(), path) for path, item in schema["paths"].items() for method in item}
    assert listed - {("GET", "/healthz")} == {(method, path) for method, path, _ in operations()}


def test_every_operation_by_every_role_on_its_tenant_and_another(daemon: Daemon, team: Team) -> None:
    """Allowed exactly where the role table says (an operator's operations: no member's); refused with 403
    otherwise; another tenant's things 404 to every role. No refused call changed anything: each was refused
    before its body was read."""
    tried = unauthorized = 0
    with httpx.Client(base_url=daemon.url, timeout=30) as http:
        for method, template, operator_only in operations():
            for tenant in [team.tenant, team.other] if "{tenant}" in template else [team.tenant]:
                path = filled(template, tenant)
                for role in ROLES:
                    body = {"member": f"m-{role}"} if (method, template) == ("POST", "/tokens") else {}  # its own
                    answer = http.request(
                        method, path, json=body if method in ("POST", "PUT") else None,
                        headers={"Authorization": f"Bearer {team.tokens[role]}"},
                    )  # fmt: skip
                    tried += 1
                    status, why = answer.status_code, f"{role} {method} {path}: {answer.status_code} {answer.text}"
                    if tenant == team.other:
                        assert status == 404 and "no tenant named" in answer.text, why
                    elif operator_only or not roles.allows(role, method, template):
                        assert status == 403 and answer.json()["error"]["code"] == "forbidden", why
                    else:
                        assert status not in (401, 403) and "no tenant named" not in answer.text, why
                    unauthorized += status < 300 and (operator_only or not roles.allows(role, method, template))
    assert unauthorized == 0
    assert tried > 300  # every operation, three roles, two tenants
    print(f"\n{tried} calls: every operation x {len(ROLES)} roles x own/other tenant")


def test_what_each_role_may_do_to_an_app(daemon: Daemon, team: Team) -> None:
    spec = AppSpec(image="strata/hello", replicas=1)
    with daemon.client(team.tokens[MemberRole.VIEWER]) as viewer:
        assert [app.name for app in viewer.apps(team.tenant)] == ["web"]
        error = refused(lambda: viewer.deploy(team.tenant, "site", spec), 403, "forbidden")
        assert error.message == f"member 'm-viewer' is a viewer of {team.tenant!r}: deploy app takes a developer"
        refused(lambda: viewer.scale(team.tenant, "web", 2), 403)
    with daemon.client(team.tokens[MemberRole.DEVELOPER]) as developer:
        developer.deploy(team.tenant, "site", spec)
        developer.scale(team.tenant, "site", 2)
        error = refused(lambda: developer.delete_app(team.tenant, "site"), 403)
        assert error.message.endswith(f"is a developer of {team.tenant!r}: delete app takes an owner")
        refused(lambda: developer.add_member(team.tenant, MemberCreate(name="eve", role=MemberRole.OWNER)), 403)
        refused(lambda: developer.create_token(TokenCreate(tenant=team.tenant)), 403)  # no owner's token either
    with daemon.client(team.tokens[MemberRole.OWNER]) as owner:
        owner.delete_app(team.tenant, "site")
        refused(lambda: owner.delete_tenant(team.tenant), 403)  # an operator's
    with daemon.operator() as api:
        done = [(e.actor, e.action) for e in api.events(team.tenant, member="m-developer")]
    assert done == [(f"{team.tenant}/m-developer/developer-token", "app.scale"),
                    (f"{team.tenant}/m-developer/developer-token", "app.create")]  # fmt: skip


def test_a_role_changed_or_a_member_removed_takes_effect_at_once(daemon: Daemon, team: Team) -> None:
    viewer = team.tokens[MemberRole.VIEWER]
    with daemon.client(viewer) as client:
        refused(lambda: client.scale(team.tenant, "web", 2), 403)
    with daemon.client(team.tokens[MemberRole.OWNER]) as owner:
        owner.set_member_role(team.tenant, "m-viewer", MemberRole.DEVELOPER)
        with daemon.client(viewer) as client:
            client.scale(team.tenant, "web", 2)  # the same token, its member's new role
            assert client.whoami().member_role == MemberRole.DEVELOPER
        members = {m.name: (m.role, m.tokens) for m in owner.members(team.tenant)}
        assert members["m-viewer"] == (MemberRole.DEVELOPER, 1)
        owner.remove_member(team.tenant, "m-viewer")
        assert "m-viewer" not in {m.name for m in owner.members(team.tenant)}
        assert not [t for t in owner.tokens(team.tenant) if t.member == "m-viewer"]
    with daemon.client(viewer) as client:
        refused(client.whoami, 401)
    with daemon.operator() as api:
        [removal] = [e for e in api.events(team.tenant) if e.action == "member.remove"]
    assert removal.actor == f"{team.tenant}/m-owner/owner-token" and removal.detail["tokens"] == 1


def test_a_member_makes_credentials_of_its_own_only(daemon: Daemon, team: Team, tmp_path: Path) -> None:
    """None outlives its maker's removal (a tenant credential of no member is the owner's) or acts for another."""
    with daemon.client(team.tokens[MemberRole.OWNER]) as owner:
        error = refused(lambda: owner.create_token(TokenCreate(tenant=team.tenant)), 403)
        assert "makes keys and tokens of its own only" in error.message
        refused(lambda: owner.create_token(TokenCreate(tenant=team.tenant, member="m-viewer")), 403)
        key = KeyCreate(public_key=KEY, role=Role.TENANT, tenant=team.tenant, member="m-developer")
        refused(lambda: owner.add_key(key), 403)
        mine = owner.create_token(TokenCreate(tenant=team.tenant, member="m-owner", name="laptop"))
        assert mine.member == "m-owner"
        refused(lambda: owner.create_token(TokenCreate(tenant=team.tenant, member="m-owner", name="m-viewer/x")), 422)
    with daemon.operator() as api:  # the tenant's own credentials (or an operator) make anyone's
        api.create_token(TokenCreate(tenant=team.tenant, member="m-viewer"))


def test_bad_member_input_is_refused_and_changes_nothing(daemon: Daemon, team: Team) -> None:
    with daemon.client(team.tokens[MemberRole.OWNER]) as owner:
        refused(lambda: owner.add_member(team.tenant, MemberCreate(name="m-viewer", role=MemberRole.OWNER)), 409)
        refused(lambda: owner.create_token(TokenCreate(tenant=team.tenant, member="nobody")), 403)  # not its own
        refused(lambda: owner.set_member_role(team.other, "m-viewer", MemberRole.OWNER), 404)
        assert {m.name: m.role for m in owner.members(team.tenant)}["m-viewer"] == MemberRole.VIEWER
    with daemon.operator() as api:
        refused(lambda: api.create_token(TokenCreate(role=Role.OPERATOR, member="m-owner")), 422)
        refused(lambda: api.events(member="m-owner"), 422)  # members are per tenant: name it
        refused(lambda: api.create_token(TokenCreate(tenant=team.tenant, member="nobody")), 404)


def test_a_viewers_shell_is_refused_by_the_exec_socket(engine: Engine, tmp_path: Path) -> None:
    """The exec WebSocket decides as the table does (its refusal reaches the client as a bare 403, before the
    socket opens: the codes here are what it decided)."""
    with db.session(engine) as session:
        tenancy.create_tenant(session, "op", TenantCreate(name="acme"))
        apps.deploy(session, "op", "acme", "web", AppSpec(image="strata/hello"), platform_domain="localhost")
        secrets = {}
        for role in ROLES:
            members.add_member(session, "op", "acme", MemberCreate(name=f"m-{role}", role=role))
            secrets[role] = tokens.mint(session, "op", TokenCreate(tenant="acme", member=f"m-{role}"))[1]
    found = {role: _find(engine, secrets[role], "acme", "web", "nothing", ["sh"]) for role in ROLES}
    assert found == {MemberRole.VIEWER: FORBIDDEN, MemberRole.DEVELOPER: NOT_FOUND, MemberRole.OWNER: NOT_FOUND}
