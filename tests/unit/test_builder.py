"""The Builder's decisions, on a real database and the in-memory engine: what is refused before building, what a
build deploys, when it changes nothing, the one build per app, the bounded images, the builds a stop cut off."""

import asyncio
import io
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from hosting.paas import build_output
from hosting.paas import builds as builds_module
from hosting.paas.build_output import BuildJob
from hosting.paas.builds import Builder
from hosting.paas.fake_runtime import FakeRuntime
from hosting.paas.image_sweep import sweep_images
from hosting.paas.runtime import BuildLimits, Container, EngineError, EngineUnavailable, InstanceSpec
from strata.api.errors import STATUS
from tenants import apps, audit, builds, db, tenancy
from tenants.enums import BuildSource, BuildState
from tenants.errors import Busy, Conflict, Invalid, QuotaExceeded, Unavailable
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
    yield Builder(engine, store, tmp_path / "builds", platform_domain=DOMAIN, daemon="here")


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


def test_one_build_per_app_across_the_daemons_on_one_database(
    builder: Builder, engine: Engine, store: FakeRuntime, tmp_path: Path
) -> None:
    """Each daemon builds what it receives, holding its own builds apart; the database holds them apart across
    daemons: refused before the upload (the other's build is recorded), and at the record (both got past that)."""
    other = Builder(engine, FakeRuntime("there"), tmp_path / "there", platform_domain=DOMAIN, daemon="there")

    async def scenario() -> None:
        store.build_gate = asyncio.Event()
        job = await start(builder, context(index="v1"))
        slot = other.claim("acme", "web")  # free on this daemon...
        with pytest.raises(Conflict, match="a build of web is running \\(on daemon here\\)"):
            other.admit(slot)  # ...but not on the database
        slot.release()
        store.build_gate.set()
        assert (await job.result()).state == BuildState.SUCCEEDED
        assert (await (await start(other, context(index="v2"))).result()).state == BuildState.SUCCEEDED

    asyncio.run(scenario())
    with db.session(engine) as session:  # two daemons past the check at once: the index refuses the second
        acme = tenancy.get_tenant(session, "acme")
        builds.start(session, "alice", acme, "web", BuildSource.GIT, None, "here")
        with pytest.raises(Conflict, match="a build of web is running"):
            builds.start(session, "bob", acme, "web", BuildSource.GIT, None, "there")
        builds.start(session, "bob", acme, "api", BuildSource.GIT, None, "there")  # another app's may


def test_a_build_at_a_daemon_on_another_host_than_the_leaders_is_refused_before_the_upload(builder: Builder) -> None:
    builder.elsewhere = lambda session: "builds run where the leader's image store is: on host host1 (daemon a)"
    slot = builder.claim("acme", "web")
    with pytest.raises(Conflict, match="on host host1"):
        builder.admit(slot)
    slot.release()
    builder.elsewhere = lambda session: None
    build(builder, context(index="v1"))


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
    """A daemon's start fails its own builds a stop cut off, not those another daemon runs; a new leader fails
    those of daemons gone."""
    with db.session(engine) as session:
        acme = tenancy.get_tenant(session, "acme")
        cut = builds.start(session, "alice", acme, "web", BuildSource.GIT, None, "here")
        elsewhere = builds.start(session, "alice", acme, "api", BuildSource.GIT, None, "there")
    assert builder.recover() == [cut.id]
    with db.session(engine) as session:
        found = {b.id: b for b in builds.list_builds(session, None)}
    assert (found[cut.id].state, found[cut.id].message) == (BuildState.FAILED, builds.INTERRUPTED)
    assert found[elsewhere.id].state == BuildState.BUILDING
    assert builder.fail_orphaned({"here", "there"}) == []
    assert builder.fail_orphaned({"here"}) == [elsewhere.id]


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
    labelled = Builder(engine, store, tmp_path / "builds", platform_domain=DOMAIN, daemon="here", platform="p1")
    _, result = build(labelled, context(index="v1"), commit="abc1234")
    assert result.image is not None
    assert store._images[result.image].labels == {"strata.platform": "p1", "strata.tenant": "acme"}


def test_a_tag_of_the_tenants_that_another_pull_moved_is_refused(
    builder: Builder, store: FakeRuntime, engine: Engine
) -> None:
    from tenants import images
    from tenants.enums import ImageSource
    from tenants.references import canonical

    reference = "registry.example.com/acme/base:1"
    store.add_image(reference)
    with db.session(engine) as session:
        tenant = tenancy.get_tenant(session, "acme")
        images.record(session, tenant, canonical(reference), store._images[reference].id, ImageSource.PULL, 1)
        session.commit()
    _, mine = build(builder, context(f"FROM {reference}\n"))
    assert mine.state == BuildState.SUCCEEDED and mine.image is not None
    store.add_image(reference, content=b"another tenant's pull of the same reference")  # moves the tag
    moved = "is no longer the image you deployed .*; deploy it again with `strata apps deploy --image"
    with pytest.raises(Invalid, match=f"FROM {reference}: the engine's {reference} {moved}"):
        asyncio.run(start(builder, context(f"FROM {reference}\n"), "api"))
    with pytest.raises(Invalid, match=f"COPY --from={reference}: the engine's {reference} {moved}"):
        asyncio.run(start(builder, context(f"FROM strata/static\nCOPY --from={reference} / /\n"), "api"))
    store._images[mine.image].onbuild = [f"COPY --from={reference} / /x"]
    with pytest.raises(Invalid, match=f"FROM {mine.image}: its ONBUILD trigger: COPY --from={reference}: .*{moved}"):
        asyncio.run(start(builder, context(f"FROM {mine.image}\n"), "api"))


def run_to_end(builder: Builder, data: bytes, app: str = "web", tenant: str = "acme") -> tuple[list[str], BuildRead]:
    """Start a build, let it end unread (a client that does not read), then read what was queued for it."""

    async def scenario() -> tuple[list[str], BuildRead]:
        job = await start(builder, data, app, tenant=tenant)
        await job.result()
        items = [item async for item in job.events()]
        assert isinstance(items[-1], BuildRead)
        return [item for item in items if isinstance(item, str)], items[-1]

    return asyncio.run(scenario())


def test_a_client_reading_too_slowly_misses_lines_told_how_many_and_the_log_keeps_them(
    builder: Builder, store: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build_output, "MAX_QUEUED_LINES", 5)
    store.build_output = [f"yes {n}" for n in range(50)]
    lines, result = run_to_end(builder, context(index="v1"))
    assert result.state == BuildState.SUCCEEDED
    assert lines[:5] == ["yes 0", "yes 1", "yes 2", "yes 3", "yes 4"]
    assert lines[5:] == [
        f"... 49 lines dropped (the client reads too slowly); the whole log: strata builds log acme {result.id}"
    ]  # 45 more `yes` lines, the 3 steps and "Successfully tagged"
    logged = builder.log_path(result.id).read_text().splitlines()
    assert logged[:50] == store.build_output and logged[-1] == "succeeded: revision 1"


def test_a_builds_log_is_capped_and_the_build_goes_on(
    builder: Builder, store: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build_output, "MAX_LOG_BYTES", 1000)
    store.build_output = ["y" * 99] * 100  # 10 000 bytes
    _, result = build(builder, context(index="v1"))
    assert result.state == BuildState.SUCCEEDED
    logged = builder.log_path(result.id).read_text()
    assert len(logged) < 1200 and "log truncated" in logged and logged.endswith("succeeded: revision 1\n")


def test_only_the_newest_build_logs_of_an_app_are_kept(builder: Builder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builds_module, "KEEP_BUILD_LOGS", 2)
    made = [build(builder, context(index=str(n)))[1].id for n in range(4)]
    other = build(builder, context(index="x"), app="api")[1].id
    assert [builder.log_path(n).exists() for n in [*made, other]] == [False, False, True, True, True]


def test_a_log_that_cannot_be_written_neither_stops_the_build_nor_keeps_its_slot(
    builder: Builder, engine: Engine, tmp_path: Path
) -> None:
    builder.log_path = lambda build_id: tmp_path / "no-such-dir" / f"{build_id}.log"  # type: ignore[method-assign]
    lines, result = build(builder, context(index="v1"))
    assert result.state == BuildState.SUCCEEDED and lines
    builder.claim("acme", "web").release()
    assert not list(builder.directory.glob("context-*"))


def test_a_tenant_deleted_during_its_build_still_ends_the_stream_and_frees_the_slot(
    builder: Builder, store: FakeRuntime, engine: Engine
) -> None:
    async def scenario() -> BuildRead:
        store.build_gate = asyncio.Event()
        job = await start(builder, context(index="v1"))
        with db.session(engine) as session:
            tenancy.delete_tenant(session, "op", "acme")
        store.build_gate.set()
        items = [item async for item in job.events()]
        assert isinstance(items[-1], BuildRead)
        return items[-1]

    result = asyncio.run(asyncio.wait_for(scenario(), 10))  # it waited forever when the end was not queued
    assert result.state == BuildState.FAILED and result.message and "acme" in result.message
    assert builder._building == set()
    assert not list(builder.directory.glob("context-*"))


def test_an_unexpected_error_fails_the_build_saying_so_not_that_its_client_went_away(
    builder: Builder, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(builder, "_deploy_revision", broken)
    _, result = build(builder, context(index="v1"))
    assert (result.state, result.message) == (BuildState.FAILED, builds_module.INTERNAL)
    with db.session(engine) as session:
        [row] = builds.list_builds(session, None)
    assert (row.state, row.message) == (BuildState.FAILED, builds_module.INTERNAL)
    builder.claim("acme", "web").release()


def test_the_stream_ends_when_the_build_task_ends_without_a_last_item() -> None:
    async def scenario() -> list[object]:
        async def dies() -> BuildRead:
            raise RuntimeError("gone")

        queue: asyncio.Queue[str | BuildRead] = asyncio.Queue()
        queue.put_nowait("a line")
        job = BuildJob(1, asyncio.create_task(dies()), queue)
        items: list[object] = [item async for item in job.events()]
        with pytest.raises(RuntimeError):
            await job.result()
        return items

    assert asyncio.run(asyncio.wait_for(scenario(), 5)) == ["a line"]


def test_a_cancel_once_the_image_is_built_deploys_and_records_it_as_deployed(
    builder: Builder, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, proceed = threading.Event(), threading.Event()
    deploy = builder._deploy_revision

    def slow(*args: object) -> int:
        entered.set()
        proceed.wait(5)
        return deploy(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(builder, "_deploy_revision", slow)

    async def scenario() -> BuildRead:
        job = await start(builder, context(index="v1"))
        await asyncio.to_thread(entered.wait, 5)
        job.task.cancel()  # the client went away while the deploy runs in its thread
        await asyncio.sleep(0.05)
        proceed.set()
        return await job.result()

    result = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert (result.state, result.revision, result.message) == (BuildState.SUCCEEDED, 1, None)
    assert app_of(engine).image == result.image


def test_a_prune_failure_is_only_logged_and_a_succeeded_builds_message_is_not_unchanged(
    builder: Builder, store: FakeRuntime
) -> None:
    store.fail("images", EngineError("the engine hiccuped"))
    _, result = build(builder, context(index="v1"))
    assert (result.state, result.message, result.unchanged) == (BuildState.SUCCEEDED, None, False)
    assert not result.model_copy(update={"message": "pruning failed"}).unchanged
    _, again = build(builder, context(index="v1"))
    assert again.unchanged


def test_an_unchanged_build_records_its_commit_so_pushing_it_again_builds_nothing(
    builder: Builder, engine: Engine
) -> None:
    build(builder, context(index="v1"), commit="aaaaaaa")
    _, again = build(builder, context(index="v1"), commit="bbbbbbb")
    assert again.unchanged
    assert app_of(engine).commit == "bbbbbbb"


def test_a_tenant_runs_two_builds_at_once_and_the_platform_four(builder: Builder, engine: Engine) -> None:
    with db.session(engine) as session:
        for name in ("t3", "t4"):
            tenancy.create_tenant(session, "op", TenantCreate(name=name))
    first, _ = builder.claim("acme", "a"), builder.claim("acme", "b")
    with pytest.raises(Busy, match="tenant 'acme' runs 2 builds already"):
        builder.claim("acme", "c")
    builder.claim("other", "a")
    builder.claim("t3", "a")
    with pytest.raises(Busy, match="the platform runs 4 builds already"):
        builder.claim("t4", "a")
    first.release()
    builder.claim("t4", "a")
    assert STATUS[Busy] == 429


def test_builds_are_refused_without_the_disk_for_a_context_or_an_engine(
    builder: Builder, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.disk_usage
    monkeypatch.setattr(builds_module.shutil, "disk_usage", lambda path: real(path)._replace(free=100 * 1024**2))
    with pytest.raises(Unavailable, match="100 MiB free for builds"):
        builder.claim("acme", "web")
    engineless = Builder(engine, None, tmp_path / "b", platform_domain=DOMAIN, daemon="here")
    with pytest.raises(Conflict, match="builds need the host's Docker engine"):  # how it was started: no outage
        engineless.claim("acme", "web")
    assert STATUS[Unavailable] == 503


def test_an_engine_that_does_not_answer_at_the_start_is_unavailable(builder: Builder, store: FakeRuntime) -> None:
    builder.platform = "p1"
    store.fail("ensure_network", EngineUnavailable("the fake engine does not answer"))
    with pytest.raises(Unavailable, match="the build engine does not answer"):
        asyncio.run(start(builder, context(index="v1")))
    builder.claim("acme", "web").release()


def test_a_new_app_past_the_plan_is_refused_before_its_context_is_uploaded(builder: Builder) -> None:
    for name in ("a", "b", "c"):
        build(builder, context(index=name), app=name)
    slot = builder.claim("acme", "d")
    with pytest.raises(QuotaExceeded, match="apps quota"):
        builder.admit(slot)
    builder.admit(builder.claim("other", "d"))  # another tenant's plan has room


def test_a_builds_run_steps_join_its_tenants_own_network(builder: Builder, store: FakeRuntime) -> None:
    builder.platform = "platform-id-long"
    build(builder, context(index="v1"))
    build(builder, context(index="v1"), tenant="other")
    assert store.build_networks == ["strata-platform-acme", "strata-platform-other"]
    assert store._networks["strata-platform-acme"] == {"strata.platform": "platform-id-long", "strata.tenant": "acme"}
