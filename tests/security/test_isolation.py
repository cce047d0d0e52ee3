"""Two tenants, one matrix: with its own token, tenant A cannot read or change anything of tenant B through
the API (B looks as absent as a tenant that does not exist), cannot see B in the console's data, cannot take
B's keys or tokens, cannot act as the operator; and B is exactly as it was afterwards. (Networks, shells in
containers, the gateway's Host handling and quotas have their own tests: see docs/reliability.md.)"""

from collections.abc import Callable, Iterator

import pytest

from tenants.client import ApiError, StrataClient
from tenants.enums import Role, TenantStatus
from tenants.schemas import AppSpec, KeyCreate, NodeCreate, TenantCreate, TokenCreate
from tests.harness import Daemon

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b"
SPEC = AppSpec(image="strata/hello")

# What A tries against B, and the status that must answer: 404 for all of B's, an operator's verbs on B too (as
# for a tenant that does not exist, so B's existence does not leak), 403 for what only an operator may do.
ATTEMPTS: list[tuple[str, Callable[[StrataClient, str], object], int]] = [
    ("read B", lambda a, b: a.tenant(b), 404),
    ("list B's apps", lambda a, b: a.apps(b), 404),
    ("read B's app", lambda a, b: a.app(b, "web"), 404),
    ("list B's instances", lambda a, b: a.instances(b, "web"), 404),
    ("read B's traffic", lambda a, b: a.traffic(b, "web"), 404),
    ("read B's logs", lambda a, b: list(a.logs(b, "web")), 404),
    ("deploy into B", lambda a, b: a.deploy(b, "intruder", SPEC), 404),
    ("redeploy B's app", lambda a, b: a.deploy(b, "web", SPEC), 404),
    ("scale B's app", lambda a, b: a.scale(b, "web", 5), 404),
    ("restart B's app", lambda a, b: a.restart(b, "web"), 404),
    ("delete B's app", lambda a, b: a.delete_app(b, "web"), 404),
    ("add a key to B", lambda a, b: a.add_key(KeyCreate(public_key=KEY, role=Role.TENANT, tenant=b)), 404),
    ("mint a token of B", lambda a, b: a.create_token(TokenCreate(role=Role.TENANT, tenant=b)), 404),
    ("mint an operator token", lambda a, b: a.create_token(TokenCreate(role=Role.OPERATOR)), 403),
    ("suspend B", lambda a, b: a.set_tenant_status(b, TenantStatus.SUSPENDED), 404),
    ("delete B", lambda a, b: a.delete_tenant(b), 404),
    ("create a tenant", lambda a, b: a.create_tenant(TenantCreate(name=f"{b}x")), 403),
    ("list the nodes", lambda a, b: a.nodes(), 403),
    ("add a node", lambda a, b: a.add_node(NodeCreate(name=f"{b}-vm")), 403),
]


@pytest.fixture(scope="module")
def two_tenants(daemon: Daemon) -> Iterator[tuple[str, str, str]]:
    """Tenants A and B, each with an app, a key and a token; A's token. Deleted after, key and all: the session's
    daemon is shared, and another test registers the same key."""
    a, b = "iso-a", "iso-b"
    with daemon.operator() as api:
        for tenant in (a, b):
            api.create_tenant(TenantCreate(name=tenant))
            api.deploy(tenant, "web", SPEC)
            api.create_token(TokenCreate(role=Role.TENANT, tenant=tenant))
        api.add_key(KeyCreate(public_key=KEY, role=Role.TENANT, tenant=b))
        token = api.create_token(TokenCreate(role=Role.TENANT, tenant=a)).token
    yield a, b, token
    with daemon.operator() as api:
        for tenant in (a, b):
            api.delete_tenant(tenant)


@pytest.mark.parametrize("what, attempt, status", ATTEMPTS, ids=[what for what, _, _ in ATTEMPTS])
def test_tenant_a_cannot_reach_tenant_b(
    daemon: Daemon, two_tenants: tuple[str, str, str], what: str, attempt: Callable, status: int
) -> None:
    _, b, token = two_tenants
    with daemon.operator() as api:
        before = everything_of(api, b)
    with daemon.client(token) as tenant_a, pytest.raises(ApiError) as refused:
        attempt(tenant_a, b)
    assert refused.value.status == status, f"{what}: {refused.value.status} {refused.value.message}"
    with daemon.operator() as api:
        assert everything_of(api, b) == before


def test_b_looks_to_a_exactly_as_a_tenant_that_does_not_exist(
    daemon: Daemon, two_tenants: tuple[str, str, str]
) -> None:
    _, b, token = two_tenants
    with daemon.client(token) as tenant_a:
        answers = []
        for name in (b, "no-such-tenant"):
            with pytest.raises(ApiError) as refused:
                tenant_a.apps(name)
            answers.append((refused.value.status, refused.value.code, refused.value.message.replace(name, "X")))
    assert answers[0] == answers[1]


def test_a_sees_only_itself_in_listings(daemon: Daemon, two_tenants: tuple[str, str, str]) -> None:
    a, b, token = two_tenants
    with daemon.client(token) as tenant_a:
        assert [t.name for t in tenant_a.summary()] == [a]  # what the console draws
        assert [t.name for t in tenant_a.tenants()] == [a]
        assert {k.tenant for k in tenant_a.keys()} <= {a}
        assert {t.tenant for t in tenant_a.tokens()} == {a}
        assert {e.tenant for e in tenant_a.events(limit=1000)} == {a}


def everything_of(api: StrataClient, tenant: str) -> list[object]:
    return [api.tenant(tenant), api.apps(tenant), api.keys(tenant), api.tokens(tenant), api.events(tenant=tenant)]
