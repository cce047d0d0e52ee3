"""A standby's front door routes what it can reach: the endpoints the leader recorded for its local and VM nodes'
instances are on the leader's machine's loopback, and another machine's same address is not theirs (maybe another
tenant's container), so a standby on another machine leaves them out; one on the leader's machine routes them."""

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from hosting.paas.nodes import NodePool
from hosting.paas.standby import Standby
from tenants import apps, daemons, db, tenancy
from tenants.enums import InstanceState
from tenants.models import Instance
from tenants.routes import RouteSpec
from tenants.schemas import AppSpec, TenantCreate


def routed(engine: Engine, host: str) -> list[str]:
    """The endpoints a standby on `host` publishes for acme/web, at its first read of the records."""
    published: list[list[RouteSpec]] = []
    stopping = asyncio.Event()

    def publish(routes: list[RouteSpec]) -> None:
        published.append(routes)
        stopping.set()

    async def first_read() -> None:
        async with asyncio.timeout(10):
            await Standby(engine, "b", NodePool(), publish, host=host).run(stopping)

    asyncio.run(first_read())
    return [endpoint for route in published[0] for endpoint in route.endpoints]


@pytest.fixture
def recorded(engine: Engine) -> Engine:
    """acme/web with one ready instance on the local node of the leader, a daemon on host1."""
    now = datetime.now(UTC)
    with db.session(engine) as session:
        tenancy.create_tenant(session, "op", TenantCreate(name="acme"))
        app, _ = apps.deploy(session, "op", "acme", "web", AppSpec(image="strata/hello"), platform_domain="localhost")
        session.add(
            Instance(id="i1", app_id=app.id, node="local", container_id="c" * 64, revision=1,
                     state=InstanceState.READY, endpoint="127.0.0.1:32771", published=32771)
        )  # fmt: skip
        session.commit()
        daemons.register(session, "a", 1, now, "host1")
        daemons.lead(session, "a", now)
        daemons.register(session, "b", 2, now, "host2")
    return engine


def test_a_standby_on_another_machine_leaves_the_leaders_loopback_endpoints_out(recorded: Engine) -> None:
    assert routed(recorded, "host2") == []
    assert routed(recorded, "host1") == ["127.0.0.1:32771"]
