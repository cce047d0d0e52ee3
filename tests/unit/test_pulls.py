"""The puller's decisions, pass by pass, on a FakeRuntime image store with a registry in memory: which image an
app's instances are made from, who must pull what with which login, and what a failed pull does. No Docker: the
real registry and engine are `tests/paas/test_registry.py`'s."""

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from hosting.paas.fake_runtime import FakeClock, FakeHealthChecker, FakePorts, FakeRuntime
from hosting.paas.liveness import Liveness
from hosting.paas.nodes import NodeHandle, NodePool
from hosting.paas.reconciler import Reconciler
from hosting.paas.runtime import RegistryAuth
from hosting.paas.scheduler import Strategy
from tenants import apps, db, registries, tenancy
from tenants.errors import Invalid
from tenants.models import App, Event, RegistryCredential
from tenants.schemas import AppSpec, TenantCreate
from tenants.secrets import SecretBox

PLATFORM = "fakeplatform0001"
PRIVATE = "registry.example.com:5000/team/web:1.4"
LATEST = "registry.example.com:5000/team/web"
LOGIN_A = RegistryAuth("alice", "s3cret-a")
LOGIN_B = RegistryAuth("bob", "s3cret-b")


class World:
    def __init__(self, engine: Engine, key: Path) -> None:
        self.engine, self.clock, self.ports = engine, FakeClock(), FakePorts()
        self.box = SecretBox(key)
        self.store = FakeRuntime("local", clock=self.clock.now, ports=self.ports)
        self.store.registry[PRIVATE] = (LOGIN_A, b"web 1.4")
        self.reconciler = Reconciler(
            engine, PLATFORM, NodePool([NodeHandle(self.store, "local", "fake://")]), Strategy.SPREAD,
            image_store=self.store, liveness=Liveness(FakeHealthChecker(self.ports)), clock=self.clock.monotonic,
            secrets=self.box,
        )  # fmt: skip
        for tenant in ("acme", "bravo"):
            with db.session(engine) as session:
                tenancy.create_tenant(session, "op", TenantCreate(name=tenant, plan="large"))

    def login(self, tenant: str, auth: RegistryAuth, host: str = "registry.example.com:5000") -> None:
        with db.session(self.engine) as session:
            registries.add(session, self.box, "op", tenant, host, auth.username, auth.password)

    def deploy(self, image: str, tenant: str = "acme", replicas: int = 1, **changes: Any) -> None:
        spec = AppSpec(image=image, replicas=replicas, memory_mib=64, **changes)
        with db.session(self.engine) as session:
            apps.deploy(session, "op", tenant, "web", spec, platform_domain="localhost")

    def restart(self, tenant: str = "acme") -> None:
        with db.session(self.engine) as session:
            apps.restart(session, "op", tenant, "web")

    def images_of(self, tenant: str = "acme") -> set[str]:
        """The image (ids) the tenant's running containers are made from."""
        return {c.spec.image for c in self.store.running(tenant=tenant)}

    def problem(self, tenant: str = "acme") -> str | None:
        with db.session(self.engine) as session:
            owner = tenancy.get_tenant(session, tenant)
            return session.exec(select(App.problem).where(App.tenant_id == owner.id)).one()

    def events(self, action: str) -> list[Event]:
        with db.session(self.engine) as session:
            return list(session.exec(select(Event).where(Event.action == action).order_by(Event.id)))

    async def passes(self, count: int = 1) -> None:
        """`count` passes, each followed by the end of the pulls it started (unless `pull_gate` holds them)."""
        for _ in range(count):
            await self.reconciler.reconcile()
            assert self.reconciler.pulls is not None
            tasks = [p.task for p in self.reconciler.pulls._pulls.values() if p.task is not None]
            gated = self.store.pull_gate is not None and not self.store.pull_gate.is_set()
            if tasks:
                await asyncio.wait(tasks, timeout=0.05 if gated else 5)


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> Iterator[World]:
    yield World(engine, tmp_path / "secret.key")


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def image_id(store: FakeRuntime, reference: str) -> str:
    info = asyncio.run(store.image(reference))
    assert info is not None
    return info.id


def test_a_platform_image_is_used_by_its_id_without_a_pull(world: World) -> None:
    world.deploy("strata/hello")
    run(lambda: world.passes(2))
    assert world.images_of() == {image_id(world.store, "strata/hello")}
    assert world.store.calls["pull"] == 0


def test_a_private_image_is_pulled_with_the_tenants_login_and_runs_by_its_id(world: World) -> None:
    world.login("acme", LOGIN_A)
    world.store.pull_gate = asyncio.Event()
    world.deploy(PRIVATE, replicas=2)

    async def scenario() -> None:
        await world.passes(2)  # the pull waits at the gate: no pass waits for it, and nothing is created
        assert world.store.running() == []
        progress = world.reconciler.pulls.progress() if world.reconciler.pulls else {}
        assert progress[("acme", "web")].status == "pulling" and progress[("acme", "web")].total_bytes == 7
        assert world.store.pull_gate is not None
        world.store.pull_gate.set()
        await world.passes(2)

    run(scenario)
    pulled = image_id(world.store, PRIVATE)
    assert world.images_of() == {pulled} and len(world.store.running()) == 2
    [event] = world.events("image.pulled")
    assert event.tenant == "acme" and event.detail["image_id"] == pulled
    assert world.store.calls["pull"] == 1


def test_a_failed_pull_names_its_reason_backs_off_and_the_running_revision_keeps_serving(world: World) -> None:
    world.login("acme", RegistryAuth("alice", "wrong"))
    world.deploy("strata/hello")

    async def scenario() -> None:
        await world.passes(2)
        serving = world.store.running()
        world.deploy(PRIVATE)
        await world.passes(3)
        assert world.store.running() == serving  # revision 1 untouched
        world.clock.advance(1)
        await world.passes(2)

    run(scenario)
    problem = world.problem()
    assert problem is not None and problem.startswith("ImagePullBackOff: Unauthorized: ")
    assert "tried 2 times" in problem and world.store.calls["pull"] == 2
    failed = world.events("image.pull_failed")
    assert [e.detail["reason"] for e in failed] == ["Unauthorized", "Unauthorized"]
    assert all("wrong" not in str(e.detail) for e in failed)
    assert world.images_of() == {image_id(world.store, "strata/hello")}


def test_a_new_login_tries_a_failed_pull_again_at_the_next_pass_not_after_its_backoff(world: World) -> None:
    world.login("acme", RegistryAuth("alice", "wrong"))
    world.deploy(PRIVATE)

    async def scenario() -> None:
        await world.passes(3)
        assert world.store.running() == [] and world.store.calls["pull"] == 1  # backing off
        world.login("acme", LOGIN_A)
        assert world.reconciler.pulls is not None
        world.reconciler.pulls.retry_soon("acme")  # as the API does when a login is stored
        await world.passes(3)  # the clock does not move: no backoff ran out

    run(scenario)
    assert world.store.calls["pull"] == 2
    assert world.images_of() == {image_id(world.store, PRIVATE)}
    assert world.problem() is None


def test_another_tenant_must_pull_an_image_on_the_engine_with_its_own_login(world: World) -> None:
    world.login("acme", LOGIN_A)
    world.deploy(PRIVATE)
    run(lambda: world.passes(3))
    owned = image_id(world.store, PRIVATE)
    for reference in (PRIVATE, owned, PRIVATE.replace(":1.4", "") + ":1.4"):  # by tag, by id: all refused
        world.deploy(reference, tenant="bravo")
        run(lambda: world.passes(3))
        assert world.store.running(tenant="bravo") == []
        problem = world.problem("bravo")
        assert problem is not None and "ImagePullBackOff" in problem
    assert world.images_of() == {owned}


def test_an_image_pulled_for_a_deleted_tenant_never_becomes_the_platforms(world: World) -> None:
    world.login("acme", LOGIN_A)
    world.deploy(PRIVATE)
    run(lambda: world.passes(3))
    with db.session(world.engine) as session:
        tenancy.delete_tenant(session, "op", "acme")  # its images' rows go with it; the image stays on the engine
    world.deploy(PRIVATE, tenant="bravo")
    run(lambda: world.passes(3))
    assert world.store.running(tenant="bravo") == []
    problem = world.problem("bravo")
    assert problem is not None and "Unauthorized" in problem


def test_a_tag_moved_by_another_tenants_pull_changes_nothing_a_revision_runs(world: World) -> None:
    world.login("acme", LOGIN_A)
    world.login("bravo", LOGIN_A)  # bravo may pull it too, and the registry now has a newer 1.4
    world.deploy(PRIVATE)
    run(lambda: world.passes(3))
    first = image_id(world.store, PRIVATE)
    world.store.registry[PRIVATE] = (LOGIN_A, b"web 1.4, rebuilt")
    world.deploy(PRIVATE, tenant="bravo")
    run(lambda: world.passes(3))
    second = image_id(world.store, PRIVATE)
    assert second != first and world.images_of("bravo") == {second}

    with db.session(world.engine) as session:
        apps.scale(session, "op", "acme", "web", 2)
    run(lambda: world.passes(2))
    assert world.images_of("acme") == {first}  # acme's revision still runs what acme pulled


def test_latest_is_pulled_again_for_each_new_revision_a_fixed_tag_is_not(world: World) -> None:
    world.store.registry[LATEST + ":latest"] = (None, b"latest")
    world.deploy(LATEST)
    run(lambda: world.passes(3))
    assert world.store.calls["pull"] == 1
    world.restart()
    run(lambda: world.passes(3))
    assert world.store.calls["pull"] == 2

    world.store.registry[PRIVATE] = (None, b"web 1.4")
    world.deploy(PRIVATE)
    run(lambda: world.passes(3))
    world.restart()
    run(lambda: world.passes(3))
    assert world.store.calls["pull"] == 3


def test_a_login_is_stored_encrypted_and_checked(world: World, tmp_path: Path) -> None:
    world.login("acme", LOGIN_A)
    key = tmp_path / "secret.key"
    assert key.stat().st_mode & 0o777 == 0o600
    with db.session(world.engine) as session:
        [shown] = registries.list_logins(session, "acme")
        row = session.exec(select(RegistryCredential)).one()
        assert "s3cret" not in row.password_encrypted and "s3cret" not in repr(shown)
        with pytest.raises(Invalid):
            registries.add(session, world.box, "op", "acme", "registry", "u", "p")  # no '.', ':' or localhost
        with pytest.raises(Invalid):
            registries.add(session, world.box, "op", "acme", "reg.example.com", "a user", "p")
    key.chmod(0o644)
    with pytest.raises(Exception, match="read by others"):
        SecretBox(key).encrypt("x")


def test_an_engine_error_while_resolving_holds_the_app_without_a_pull_and_it_resolves_next_pass(world: World) -> None:
    world.deploy("strata/hello")
    world.store.fail("image")  # the store does not answer this once

    async def scenario() -> None:
        await world.passes(1)
        assert world.store.running() == [] and world.store.calls["pull"] == 0  # no pull, no instances
        assert world.reconciler.pulls is not None and world.reconciler.pulls.progress() == {}
        await world.passes(2)

    run(scenario)
    assert world.store.calls["pull"] == 0 and world.problem() is None
    assert world.images_of() == {image_id(world.store, "strata/hello")}


@pytest.mark.parametrize(
    ("reference", "remedy"),
    [
        ("strata/static", "`strata images bootstrap`"),
        ("docker.io/strata/hello:latest", "`strata images bootstrap`"),
        ("strata/tools:1", "`strata images load FILE.tar`"),
        ("strata/guestbook", "deploy its catalog template again (that builds it)"),
    ],
)
def test_the_platforms_own_references_are_never_pulled_from_a_registry(
    world: World, reference: str, remedy: str
) -> None:
    for sample in ("strata/static", "strata/hello"):
        world.store.remove_image(sample)  # not bootstrapped (or removed)
    hub = b"someone else's image on Docker Hub"
    for name in ("strata/static:latest", "strata/hello:latest", "strata/tools:1"):
        world.store.registry[name] = (None, hub)  # anyone could push these names there
    world.deploy(reference)
    run(lambda: world.passes(3))
    assert world.store.calls["pull"] == 0 and world.store.running() == []
    assert world.problem() == f"{reference} is the platform's image and is not on the image store: {remedy}"
    assert asyncio.run(world.store.image(reference)) is None  # the platform's tag was not taken over

    world.store.add_image(reference)  # the operator bootstraps (or loads) it
    run(lambda: world.passes(2))
    assert world.images_of() == {image_id(world.store, reference)} and world.store.calls["pull"] == 0


def test_what_is_kept_per_reference_goes_once_its_pulls_end(world: World) -> None:
    world.login("acme", LOGIN_A)
    world.deploy(PRIVATE)
    run(lambda: world.passes(3))
    assert world.reconciler.pulls is not None
    assert world.images_of() == {image_id(world.store, PRIVATE)}
    assert not world.reconciler.pulls._locks and not world.reconciler.pulls._in_flight


def test_an_unusable_key_fails_the_pull_and_the_tenant_is_not_told_the_keys_path(world: World, tmp_path: Path) -> None:
    world.login("acme", LOGIN_A)
    readable = tmp_path / "elsewhere" / "secret.key"
    readable.parent.mkdir()
    readable.write_bytes(b"x" * 44)
    readable.chmod(0o644)  # the operator's mistake
    assert world.reconciler.pulls is not None
    world.reconciler.pulls.secrets = SecretBox(readable)
    world.deploy(PRIVATE)
    run(lambda: world.passes(2))
    problem = world.problem()
    assert problem is not None and problem.startswith("ImagePullBackOff: Failed: ") and "an operator must" in problem
    assert str(tmp_path) not in problem and "chmod" not in problem
