"""The Builder's decisions, on a real database and the in-memory engine: what is refused before building, what a
build deploys, when it changes nothing, the one build per app, the bounded images, the builds a stop cut off."""

import asyncio
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from hosting.paas.builds import Builder, BuildJob, sweep_images
from hosting.paas.fake_runtime import FakeRuntime
from hosting.paas.runtime import BuildLimits, Container, EngineError, InstanceSpec
from tenants import apps, audit, builds, db, tenancy
from tenants.enums import BuildSource, BuildState
from tenants.errors import Conflict, Invalid, QuotaExceeded
from tenants.schemas import AppSpec, BuildRead, TenantCreate

DOMAIN = "localhost"
STATIC = "FROM strata/static\nEXPOSE 9000\nCOPY . /www\n"


def context(dockerfile: str | None = STATIC, **files: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        entries = {**({"Dockerfile": dockerfile} if dockerfile is not None else {}), **files}
        for name, text in entries.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def store() -> FakeRuntime:
    return FakeRuntime("local")


@pytest.fixture
def builder(engine: Engine, store: FakeRuntime, tmp_path: Path) -> Iterator[Builder]:
    with db.session(engine) as session:
        tenancy.create_tenant(session, "op", TenantCreate(name="acme"))
        tenancy.create_tenant(session, "op", TenantCreate(name="other"))
    yield Builder(engine, store, tmp_path / "builds", platform_domain=DOMAIN)


async def start(
    builder: Builder, data: bytes, app: str = "web", commit: str | None = None, tenant: str = "acme"
) -> BuildJob:
    slot = builder.claim(tenant, app)
    path = builder.context_path()
    path.write_bytes(data)
    try:
        return await builder.start(slot, actor="alice", context=path, source=BuildSource.UPLOAD, commit=commit)
    except BaseException:
        slot.release()
        raise


def build(
    builder: Builder, data: bytes, app: str = "web", commit: str | None = None, tenant: str = "acme"
) -> tuple[list[str], BuildRead]:
    async def scenario() -> tuple[list[str], BuildRead]:
        job = await start(builder, data, app, commit, tenant)
        lines, result = [], None
        async for item in job.events():
            if isinstance(item, BuildRead):
                result = item
            else:
                lines.append(item)
        assert result is not None
        return lines, result

    return asyncio.run(scenario())


def app_of(engine: Engine, name: str = "web", tenant: str = "acme") -> apps.AppRead:
    with db.session(engine) as session:
        return apps.describe(session, tenant, name)


def test_a_first_build_creates_the_app_on_the_images_port_with_one_replica(
    builder: Builder, store: FakeRuntime, engine: Engine
) -> None:
    lines, result = build(builder, context(index="v1"), commit="abc1234")
    assert (result.state, result.revision) == (BuildState.SUCCEEDED, 1)
    assert result.image == f"strata-build/acme/web:{result.id}"
    assert lines[0] == "Step 1/3 : FROM strata/static"
    app = app_of(engine)
    assert (app.image, app.port, app.replicas, app.commit) == (result.image, 9000, 1, "abc1234")
    assert store.builds == [(result.image, BuildLimits(cpu_millicores=500, memory_mib=512))]  # the small plan's
    assert "succeeded" in builder.log_path(result.id).read_text()
    with db.session(engine) as session:
        actions = [event.action for event in audit.list_events(session, tenant="acme")]
    assert actions[:3] == ["build.succeeded", "app.create", "build.start"]


def test_a_rebuild_keeps_the_apps_settings_and_records_the_commit(builder: Builder, engine: Engine) -> None:
    build(builder, context(index="v1"))
    with db.session(engine) as session:
        spec = AppSpec(image=app_of(engine).image, port=9000, replicas=2, env={"A": "1"})
        apps.deploy(session, "op", "acme", "web", spec, platform_domain=DOMAIN)
    _, result = build(builder, context(index="v2"), commit="def5678")
    app = app_of(engine)
    assert (result.revision, app.revision, app.image) == (3, 3, result.image)  # 2 was the env change
    assert (app.replicas, app.env, app.commit) == (2, {"A": "1"}, "def5678")


def test_building_what_the_app_runs_already_changes_nothing(builder: Builder, engine: Engine) -> None:
    _, first = build(builder, context(index="v1"))
    _, again = build(builder, context(index="v1"))
    assert again.state == BuildState.SUCCEEDED and again.message and again.message.startswith("unchanged")
    assert (again.revision, again.image, app_of(engine).revision) == (1, first.image, 1)


def test_a_failing_step_fails_the_build_and_leaves_the_app_as_it_was(builder: Builder, engine: Engine) -> None:
    _, good = build(builder, context(index="v1"))
    lines, bad = build(builder, context("FROM strata/static\nRUN false\n"))
    assert bad.state == BuildState.FAILED
    assert bad.message == "The command '/bin/sh -c false' returned a non-zero code: 1"
    assert lines[-1] == "Step 2/2 : RUN false"
    assert (app_of(engine).revision, app_of(engine).image) == (1, good.image)


def test_a_context_without_a_dockerfile_is_refused_saying_what_to_add(builder: Builder, store: FakeRuntime) -> None:
    with pytest.raises(Invalid, match="(?s)no Dockerfile.*FROM strata/static.*COPY . /www"):
        asyncio.run(start(builder, context(None, index="hi")))
    assert store.builds == []
    builder.claim("acme", "web").release()  # the slot was given back


def test_a_new_app_past_the_plan_is_refused_before_building(builder: Builder, store: FakeRuntime) -> None:
    for name in ("a", "b", "c"):  # the small plan's 3 apps
        build(builder, context(index=name), app=name)
    with pytest.raises(QuotaExceeded, match="apps quota"):
        asyncio.run(start(builder, context(index="d"), app="d"))
    assert len(store.builds) == 3


def test_one_build_per_app_at_a_time_and_the_slot_goes_with_the_build(builder: Builder, store: FakeRuntime) -> None:
    async def scenario() -> None:
        store.build_gate = asyncio.Event()
        job = await start(builder, context(index="v1"))
        with pytest.raises(Conflict, match="a build of web is running"):
            builder.claim("acme", "web")
        builder.claim("acme", "api").release()  # another app builds meanwhile
        store.build_gate.set()
        assert (await job.result()).state == BuildState.SUCCEEDED
        builder.claim("acme", "web").release()

    asyncio.run(scenario())


def test_a_client_that_goes_away_cancels_its_build_and_frees_the_slot(builder: Builder, store: FakeRuntime) -> None:
    async def scenario() -> BuildRead:
        store.build_gate = asyncio.Event()
        job = await start(builder, context(index="v1"))
        events = job.events()
        await anext(events)  # the first line arrived; then the client goes
        await events.aclose()
        return await job.result()

    result = asyncio.run(scenario())
    assert (result.state, result.message) == (BuildState.FAILED, "the build was cancelled: its client went away")
    builder.claim("acme", "web").release()


def test_only_the_newest_build_images_of_an_app_are_kept(builder: Builder, store: FakeRuntime) -> None:
    made = [build(builder, context(index=str(n)))[1].image for n in range(5)]
    kept = sorted(tag for image in asyncio.run(store.images()) for tag in image.tags if tag.startswith("strata-build/"))
    assert kept == sorted(made[-3:])


def test_a_built_image_runs_for_its_own_tenant_only(builder: Builder, engine: Engine) -> None:
    _, result = build(builder, context(index="v1"))
    assert result.image is not None
    with db.session(engine) as session, pytest.raises(Invalid, match="has no image"):
        apps.deploy(session, "op", "other", "web", AppSpec(image=result.image), platform_domain=DOMAIN)
    with db.session(engine) as session:  # its own tenant may deploy it again, to another app
        apps.deploy(session, "op", "acme", "copy", AppSpec(image=result.image), platform_domain=DOMAIN)


def test_builds_a_stop_cut_off_are_failed_at_the_next_start(builder: Builder, engine: Engine) -> None:
    with db.session(engine) as session:
        cut = builds.start(session, "alice", tenancy.get_tenant(session, "acme"), "web", BuildSource.GIT, None)
    assert builder.recover() == [cut.id]
    with db.session(engine) as session:
        [found] = builds.list_builds(session, None)
    assert (found.state, found.message) == (BuildState.FAILED, builds.INTERRUPTED)


def test_a_build_caches_from_its_apps_own_earlier_images_only(builder: Builder, store: FakeRuntime) -> None:
    """The engine's cache is every tenant's: a build may reuse only the steps of its app's own earlier images,
    and a first build none at all (an empty `cache_from`: `nocache`)."""
    _, first = build(builder, context(index="v1"))
    _, second = build(builder, context(index="v2"))
    build(builder, context(index="v1"), tenant="other")  # the same context as acme's first
    build(builder, context(index="v1"), app="api")  # another app of the same tenant: a cache of its own
    ids = {tag: image.id for image in asyncio.run(store.images()) for tag in image.tags}
    assert store.build_caches == [[], [ids[first.image]], [], []]
    build(builder, context(index="v3"))
    assert store.build_caches[-1] == [ids[second.image], ids[first.image]]  # newest first


def test_a_deleted_tenants_build_images_are_swept_once_its_containers_are_gone(
    builder: Builder, engine: Engine, store: FakeRuntime
) -> None:
    builder.platform = "p1"  # the daemon's: its images are labelled with it
    _, mine = build(builder, context(index="v1"))
    _, theirs = build(builder, context(index="v1"), tenant="other")
    store.add_image("strata-build/gone/web:9", {"strata.platform": "another-platform"})  # not this platform's
    with db.session(engine) as session:
        tenancy.delete_tenant(session, "op", "acme")
    running = Container("local", "c1", "acme", "web", 1, "i1", True, None, None, None)

    def tags() -> set[str]:
        return {tag for image in asyncio.run(store.images()) for tag in image.tags if tag.startswith("strata-build/")}

    assert asyncio.run(sweep_images([store], "p1", {"other"}, [running])) == []  # its container goes first
    assert asyncio.run(sweep_images([store], "p1", {"other"}, [])) == [f"local: {mine.image}"]
    assert tags() == {theirs.image, "strata-build/gone/web:9"}


def test_the_fake_engine_refuses_an_image_asking_for_capabilities_never_granted(
    builder: Builder, store: FakeRuntime
) -> None:
    _, admin = build(builder, context('FROM strata/static\nLABEL strata.capabilities="SYS_ADMIN"\n'))
    _, bind = build(builder, context('FROM strata/static\nLABEL strata.capabilities="NET_BIND_SERVICE"\n'), app="b")
    assert admin.image is not None and bind.image is not None

    def spec(image: str, instance: str) -> InstanceSpec:
        return InstanceSpec("p1", "acme", "web", 1, instance, image, None, {}, 8080, 100, 64, 64, "net")

    async def scenario() -> None:
        await store.ensure_network("net", {})
        with pytest.raises(EngineError, match="never grants: SYS_ADMIN"):
            await store.create(spec(admin.image or "", "i1"))
        assert (await store.create(spec(bind.image or "", "i2"))).running
        assert [c.spec.image for c in store.containers_of("acme")] == [bind.image]

    asyncio.run(scenario())


def test_building_from_another_tenants_image_is_refused_before_anything_is_built(
    builder: Builder, store: FakeRuntime, engine: Engine
) -> None:
    _, theirs = build(builder, context(index="a"), tenant="other")
    assert theirs.image is not None
    store.add_image("registry.example.com/other/private:1")
    store._images["registry.example.com/other/private:1"].digests = ["registry.example.com/other/private@sha256:1"]
    built = list(store.builds)
    for dockerfile in (
        f"FROM {theirs.image}\n",
        f"FROM {store._images[theirs.image].id}\n",  # by its id
        f"FROM strata/static\nCOPY --from={theirs.image} /www /www\n",
        "FROM registry.example.com/other/private:1\n",  # another tenant's pull, on the engine
        "FROM nowhere/to-be-found:1\n",
    ):
        with pytest.raises(Invalid, match="not one of your images nor the platform's; deploy it once with"):
            asyncio.run(start(builder, context(dockerfile)))
    with pytest.raises(Invalid, match="FROM with build arguments is not supported"):
        asyncio.run(start(builder, context("ARG B\nFROM $B\n")))
    assert store.builds == built
    with db.session(engine) as session:
        assert [b.tenant for b in builds.list_builds(session, None)] == ["other"]


def test_building_from_the_platforms_images_stages_and_the_tenants_own_works(
    builder: Builder, store: FakeRuntime
) -> None:
    _, first = build(builder, context(index="v1"))
    _, second = build(
        builder, context(f"FROM strata/static AS base\nFROM {first.image}\nCOPY --from=base / /\n"), "api"
    )
    assert (first.state, second.state) == (BuildState.SUCCEEDED, BuildState.SUCCEEDED)


def test_a_base_images_onbuild_trigger_copying_from_another_tenants_image_is_refused(
    builder: Builder, store: FakeRuntime
) -> None:
    _, theirs = build(builder, context(index="a"), tenant="other")
    _, mine = build(builder, context(index="v1"))
    assert mine.image is not None
    store._images[mine.image].onbuild = [f"COPY --from={theirs.image} /www /loot"]
    with pytest.raises(Invalid, match=f"ONBUILD trigger: COPY --from={theirs.image}: not one of your images"):
        asyncio.run(start(builder, context(f"FROM {mine.image}\n"), "api"))


def test_a_builds_image_carries_only_the_labels_something_reads(
    engine: Engine, store: FakeRuntime, tmp_path: Path
) -> None:
    with db.session(engine) as session:
        tenancy.create_tenant(session, "op", TenantCreate(name="acme"))
    labelled = Builder(engine, store, tmp_path / "builds", platform_domain=DOMAIN, platform="p1")
    _, result = build(labelled, context(index="v1"), commit="abc1234")
    assert result.image is not None
    assert store._images[result.image].labels == {"strata.platform": "p1", "strata.tenant": "acme"}
