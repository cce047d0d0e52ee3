"""Builds of tenants' apps from source, deployed as a new revision when they succeed (Dokku's model: the build
is the transaction, and a failed one leaves the running revision as it was).

`Builder` is held by the daemon and builds on the platform's image store (the host's engine), from which the
reconciler ships images to the nodes that need them. The order of a build, and why:

1. `claim` the app's one slot, before the context is even uploaded: a second build of the app is refused at
   once ("a build of web is running"), as is a build past `MAX_BUILDS_PER_TENANT` or `MAX_BUILDS` running at
   once, or with less disk free than a context may take; `admit` then refuses a suspended tenant or a new app
   past the plan before the upload. The slot goes with the build's end, whatever ends it, or with its client.
2. `start` checks what can be checked before building — the tenant is active, a new app fits the plan, the
   context is a tar with a `Dockerfile`, and each image it names (`FROM`, `COPY --from=`, and the `ONBUILD`
   triggers of those) is an earlier stage, `scratch`, the tenant's own (`tenants.images`) or the platform's
   (`pulls.is_platform_image`): the engine would resolve any image it holds, another tenant's build or
   private pull among them — records the build (`building`) and starts it in a task of its own, so
   a client that goes away cancels it (which stops the engine's build) rather than leaving it unowned.
3. The build runs capped by the plan's `build_cpu_millicores`/`build_memory_mib`, its RUN steps on the
   tenant's own network (never the engine's bridge, shared by every tenant's builds), its output written to
   `<builds dir>/<id>.log` (capped; the app's last `KEEP_BUILD_LOGS` kept) and streamed to the client (a client
   too slow misses lines, told so); the image is tagged `strata-build/<tenant>/<app>:<id>`.
   Its only build cache is the app's own earlier build images (`cache_from`; a first build uses none): the
   engine's cache is shared by every tenant, and another's cached `RUN` step would bring its output along.
4. The image becomes the tenant's (`tenants.images`) and the app's new revision (its other settings kept; a
   new app gets the image's lowest EXPOSEd port, else 8080, and one replica) with its commit — unless the app
   already runs that very image, which changes nothing but the commit recorded (its message starts with
   "unchanged:", `BuildRead.unchanged`). Once the image exists, a cancel no longer stops the deploy: the
   outcome recorded is what happened.
5. Older build images of the app beyond the last `keep` are removed (never the one its revision runs), so the
   app's share of the engine's images and build cache stays bounded. A deleted tenant's build images go with
   it: the reconciler sweeps them (`image_sweep`) once its containers are gone.
"""

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine
from sqlmodel import Session

from hosting.paas import networks
from hosting.paas.build_context import check_context as _check_context
from hosting.paas.build_images import check_images
from hosting.paas.build_output import BuildJob, BuildOutput, Event
from hosting.paas.runtime import (
    PLATFORM_LABEL,
    TENANT_LABEL,
    BuildFailed,
    BuildLimits,
    EngineError,
    EngineUnavailable,
    ImageInfo,
    NodeRuntime,
)
from tenants import apps, builds, db, images
from tenants.enums import BuildSource, BuildState, ImageSource, TenantStatus
from tenants.errors import Busy, Conflict, DomainError, NotFound, Unavailable
from tenants.models import App, Plan, Tenant, saved_id, utcnow
from tenants.names import check_name
from tenants.quotas import check_quota, usage_of
from tenants.references import canonical
from tenants.schemas import UNCHANGED_PREFIX, AppSpec, BuildRead
from tenants.tenancy import get_plan, get_tenant

log = logging.getLogger(__name__)
T = TypeVar("T")

KEEP_BUILD_IMAGES = 3  # of each app, the newest; older ones are removed after a successful build
KEEP_BUILD_LOGS = 20  # of each app, the newest builds' logs; older ones are removed as builds end
MAX_BUILDS_PER_TENANT = 2  # builds (their uploads included) one tenant runs at once
MAX_BUILDS = 4  # builds the platform runs at once
MAX_CONTEXT_BYTES = 512 * 1024**2  # an uploaded build context, as spooled to disk; a build needs that much free
DEFAULT_PORT = 8080  # a new app's port when its image EXPOSEs none
CONTEXT_CHUNK_BYTES = 256 * 1024
CANCELLED = "the build was cancelled: its client went away"
INTERNAL = "the build failed on an internal error of the platform (the daemon's log has the details); build again"


class BuildSlot:
    """The right to build one app, held from before its context arrives until its build ends."""

    def __init__(self, release: Callable[[], None], tenant: str, app: str) -> None:
        self.tenant, self.app = tenant, app
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        """Give the slot back (again is harmless)."""
        if self._release is not None:
            self._release()
            self._release = None


@dataclass(frozen=True)
class _Plan:
    """What `start` found out before building: the caps, and whether the app exists."""

    limits: BuildLimits
    build_id: int
    actor: str
    cache_from: list[str]  # the app's own earlier build images: its only build cache (none: no cache at all)
    network: str | None  # the tenant's network, which its RUN steps join (None: the engine's default bridge)
    source: BuildSource


class Builder:
    """Builds on `store` (None: the platform has no local engine, and builds are refused), one at a time per
    app (`MAX_BUILDS_PER_TENANT` per tenant, `MAX_BUILDS` in all); logs under `directory`; deploys with
    `platform_domain` (for the hostname checks of a deploy); labels its images with `platform` (the platform's
    id), by which the reconciler finds those of deleted tenants, and runs their steps on the tenant's network."""

    def __init__(
        self,
        engine: Engine,
        store: NodeRuntime | None,
        directory: Path,
        *,
        platform_domain: str,
        daemon: str,
        platform: str | None = None,
        keep: int = KEEP_BUILD_IMAGES,
    ) -> None:
        self.engine, self.daemon = engine, daemon  # this daemon's name: the builds it runs are recorded as its
        self.store = store
        self.directory = directory
        self.platform_domain = platform_domain
        self.platform = platform
        self.keep = keep
        self._building: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[BuildRead]] = set()
        # why builds belong on another host (the leader's, with the image store), if they do
        self.elsewhere: Callable[[Session], str | None] = lambda session: None

    def recover(self) -> list[int]:
        """At the daemon's start: the builds it was running when it stopped are failed, saying so."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with db.session(self.engine) as session:
            return builds.fail_interrupted(session, self.daemon)

    def fail_orphaned(self, alive: Collection[str]) -> list[int]:
        """The leader, now and then: the builds of daemons gone (not `alive`) are failed, saying so."""
        with db.session(self.engine) as session:
            return builds.fail_orphaned(session, alive)

    def log_path(self, build_id: int) -> Path:
        return self.directory / f"{build_id}.log"

    def context_path(self) -> Path:
        """A new file to spool an uploaded context to (the build removes it when it ends)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(prefix="context-", suffix=".tar", dir=self.directory)
        os.close(fd)
        return Path(name)

    def claim(self, tenant: str, app: str) -> BuildSlot:
        """The app's build slot, or at once `Conflict` if a build of it runs, `Busy` if the tenant or the
        platform runs as many builds as it may, `Unavailable` without an engine or the disk for a context."""
        if self.store is None:
            # how the daemon was started, as `_reachable` answers for images: a conflict with it, not an outage
            raise Conflict("builds need the host's Docker engine: this daemon runs without it (--no-local-node)")
        key = (tenant, app)
        if key in self._building:
            raise Conflict(f"a build of {app} is running; wait for it to end (`strata builds list {tenant}`)")
        if sum(1 for owner, _ in self._building if owner == tenant) >= MAX_BUILDS_PER_TENANT:
            raise Busy(
                f"tenant {tenant!r} runs {MAX_BUILDS_PER_TENANT} builds already, the most at once; wait for one "
                f"to end (`strata builds list {tenant}`)"
            )
        if len(self._building) >= MAX_BUILDS:
            raise Busy(f"the platform runs {MAX_BUILDS} builds already, the most at once; try again in a minute")
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        free = shutil.disk_usage(self.directory).free
        if free < MAX_CONTEXT_BYTES:
            raise Unavailable(
                f"the platform's disk has {free // 1024**2} MiB free for builds, less than a build's context may "
                f"take ({MAX_CONTEXT_BYTES // 1024**2} MiB); try again later"
            )
        self._building.add(key)
        return BuildSlot(lambda: self._building.discard(key), tenant, app)

    def tenants_building(self) -> set[str]:
        """The tenants with a build claimed or running (the network sweep keeps their networks)."""
        return {tenant for tenant, _ in self._building}

    def admit(self, slot: BuildSlot) -> None:
        """What can be refused before the context is uploaded: a build on a host other than the leader's, a
        suspended tenant, a new app past the plan."""
        with db.session(self.engine) as session:
            if (elsewhere := self.elsewhere(session)) is not None:
                raise Conflict(elsewhere)
            _admit(session, slot)

    async def start(
        self, slot: BuildSlot, *, actor: str, context: Path, source: BuildSource, commit: str | None
    ) -> BuildJob:
        """Check, record and start the build of `slot`'s app from the tar at `context`. Refusals (a suspended
        tenant, a quota, no Dockerfile, `Unavailable` the engine) raise a `DomainError` and leave nothing behind
        but the slot, which the caller releases; once started, the build owns the slot and the context file."""
        assert self.store is not None  # claim refuses builds without one
        try:
            dockerfile = await asyncio.to_thread(_check_context, context)
            await check_images(self.engine, self.store, slot.tenant, dockerfile)
            network = await self._network(slot.tenant)
        except EngineUnavailable as exc:
            raise Unavailable(f"the build engine does not answer ({exc}); nothing was built: try again") from None
        planned = await asyncio.to_thread(self._prepare, slot, actor, source, commit, network)
        queue: asyncio.Queue[Event] = asyncio.Queue()  # bounded by `BuildOutput`, which always adds the last item
        task = asyncio.create_task(self._run(slot, planned, context, commit, queue), name=f"build-{planned.build_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return BuildJob(planned.build_id, task, queue)

    async def _network(self, tenant: str) -> str | None:
        """The tenant's own network (made if missing, as the reconciler makes it for its apps), for the build's
        RUN steps: on the engine's default bridge they could reach every tenant's builds. None without a
        platform id (tests)."""
        assert self.store is not None
        if self.platform is None:
            return None
        name = networks.tenant_network(self.platform, tenant)
        try:
            await self.store.ensure_network(name, {PLATFORM_LABEL: self.platform, TENANT_LABEL: tenant})
        except EngineUnavailable:
            raise
        except EngineError as exc:
            raise Unavailable(f"the network of tenant {tenant!r} cannot be made for the build: {exc}") from None
        return name

    def _prepare(
        self, slot: BuildSlot, actor: str, source: BuildSource, commit: str | None, network: str | None
    ) -> _Plan:
        with db.session(self.engine) as session:
            tenant, plan = _admit(session, slot)  # again: the upload took a while
            cache_from = builds.cache_images(session, tenant, slot.app)
            build = builds.start(session, actor, tenant, slot.app, source, commit, self.daemon)
            limits = BuildLimits(plan.build_cpu_millicores, plan.build_memory_mib)
            return _Plan(limits, saved_id(build), actor, cache_from, network, source)

    async def _run(
        self, slot: BuildSlot, planned: _Plan, context: Path, commit: str | None, queue: "asyncio.Queue[Event]"
    ) -> BuildRead:
        """The build, deploy and record; whatever happens (a full disk, the tenant deleted meanwhile, an
        unexpected error), the context is removed, the slot released and the client gets a last item."""
        assert self.store is not None  # claim refuses builds without one
        store, build_id = self.store, planned.build_id
        tag = builds.image_tag(slot.tenant, slot.app, build_id)
        # Each label is a LABEL step of the legacy builder (a container each): only those something reads, the
        # platform's (`image_sweep`) and the tenant's (`pulls.is_platform_image`); app and commit are the Build's.
        labels = {**({PLATFORM_LABEL: self.platform} if self.platform else {}), TENANT_LABEL: slot.tenant}
        state, image, revision = BuildState.FAILED, None, None
        message: str | None = None
        output = BuildOutput(self.log_path(build_id), queue, f"strata builds log {slot.tenant} {build_id}")
        result: BuildRead | None = None
        try:
            try:
                building = store.build(
                    _read(context),
                    tag,
                    limits=planned.limits,
                    labels=labels,
                    cache_from=planned.cache_from,
                    network=planned.network,
                )
                async with aclosing(building) as lines:
                    async for line in lines:
                        output.line(line)
                built = await store.image(tag)
                if built is None:
                    raise BuildFailed(f"the image {tag} vanished right after it was built")
                image, revision, message = await _finish_regardless(
                    self._deploy(slot, planned.actor, tag, built, commit)
                )
                state = BuildState.SUCCEEDED
                await self._prune(slot)
            except (DomainError, EngineError) as exc:  # BuildFailed among them
                message = exc.message if isinstance(exc, DomainError) else str(exc)
            except asyncio.CancelledError:  # its client went away (closing the engine's build): it ends as failed
                if state != BuildState.SUCCEEDED:
                    message = CANCELLED
            except Exception:
                log.exception("build %d of %s/%s", build_id, slot.tenant, slot.app)
                if state != BuildState.SUCCEEDED:
                    message = INTERNAL
            context.unlink(missing_ok=True)
            slot.release()
            result = await asyncio.to_thread(self._finish, slot, planned, commit, state, message, image, revision)
            output.end(f"{state}: {message}" if message else f"{state}: revision {revision}", result)
        finally:
            context.unlink(missing_ok=True)
            slot.release()
            output.close()
            if result is None:  # cancelled again while recording: the client still gets its last item
                result = _unrecorded(slot, planned, commit, state, message, image, revision)
                queue.put_nowait(result)
        return result

    def _finish(
        self,
        slot: BuildSlot,
        planned: _Plan,
        commit: str | None,
        state: BuildState,
        message: str | None,
        image: str | None,
        revision: int | None,
    ) -> BuildRead:
        """Record how the build ended and remove the app's older build logs; the build as it ended even when
        it cannot be recorded (its tenant was deleted meanwhile, the database refuses), saying why in the log."""
        try:
            with db.session(self.engine) as session:
                build = builds.finish(session, planned.build_id, state, message=message, image=image, revision=revision)
                older = builds.older_builds(session, build.tenant_id, slot.app, KEEP_BUILD_LOGS)
                result = builds.read(build, slot.tenant)
        except Exception as exc:  # noqa: BLE001 - the build's end must reach its client whatever the database says
            log.warning("build %d of %s/%s could not be recorded as %s: %s", planned.build_id, slot.tenant, slot.app,
                        state, exc)  # fmt: skip
            return _unrecorded(slot, planned, commit, state, message, image, revision)
        for build_id in older:
            self.log_path(build_id).unlink(missing_ok=True)
        return result

    async def _deploy(
        self, slot: BuildSlot, actor: str, tag: str, built: ImageInfo, commit: str | None
    ) -> tuple[str, int, str | None]:
        """(image, revision, message) of the deploy of the built image; a message starting "unchanged:" when
        the app runs that image already (its commit is recorded all the same)."""
        assert self.store is not None
        current = await asyncio.to_thread(self._current, slot)
        if current is not None:
            running = await self.store.image(current.image)
            if running is not None and running.id == built.id:
                with contextlib.suppress(EngineError):
                    await self.store.delete_image(tag)  # only a second name of the image the app runs
                await asyncio.to_thread(self._record_commit, slot, commit)
                return current.image, current.revision, f"{UNCHANGED_PREFIX} {slot.app} runs this image already"
        revision = await asyncio.to_thread(self._deploy_revision, slot, actor, tag, built, commit)
        return tag, revision, None

    def _current(self, slot: BuildSlot) -> App | None:
        with db.session(self.engine) as session:
            return _app_or_none(session, get_tenant(session, slot.tenant), slot.app)

    def _record_commit(self, slot: BuildSlot, commit: str | None) -> None:
        """The app runs `commit` (the build changed nothing), so that pushing it again builds nothing."""
        if commit is None:
            return
        with db.session(self.engine) as session:
            app = apps.get_app(session, get_tenant(session, slot.tenant), slot.app)
            app.commit = commit
            session.add(app)
            session.commit()

    def _deploy_revision(self, slot: BuildSlot, actor: str, tag: str, built: ImageInfo, commit: str | None) -> int:
        """Record the image as the tenant's and deploy it, in one transaction."""
        with db.session(self.engine) as session:
            tenant = get_tenant(session, slot.tenant)
            images.record(session, tenant, canonical(tag), built.id, ImageSource.BUILD, built.size_bytes)
            current = _app_or_none(session, tenant, slot.app)
            if current is None:
                spec = _new_spec(tag, built.ports[0] if built.ports else DEFAULT_PORT)
            else:
                spec = AppSpec.model_validate(current.model_dump(include=set(AppSpec.model_fields)) | {"image": tag})
            app, _ = apps.deploy(session, actor, slot.tenant, slot.app, spec, platform_domain=self.platform_domain)
            app.commit = commit
            session.add(app)
            session.commit()
            return app.revision

    async def _prune(self, slot: BuildSlot) -> None:
        """Remove the app's build images but the newest `keep` and the one its revision runs; an image still
        used by a container (an old revision draining) is left for the next build's pruning. A failure is only
        logged: the build succeeded all the same."""
        assert self.store is not None
        try:
            prefix = f"{builds.BUILD_REPOSITORY}/{slot.tenant}/{slot.app}:"
            current = await asyncio.to_thread(self._current, slot)
            tags = {tag for image in await self.store.images() for tag in image.tags if tag.startswith(prefix)}
            ordered = sorted(
                tags, key=lambda tag: int(tag.rpartition(":")[2]) if tag.rpartition(":")[2].isdigit() else 0
            )
            removed = []
            for tag in ordered[: max(0, len(ordered) - self.keep)]:
                if current is not None and tag == current.image:
                    continue
                try:
                    await self.store.delete_image(tag)
                    removed.append(tag)
                except EngineError as exc:
                    log.info("build image %s kept for now: %s", tag, exc)
            if removed:
                await asyncio.to_thread(self._forget, slot, removed)
        except Exception as exc:  # noqa: BLE001 - the next build prunes again
            log.warning("pruning the build images of %s/%s: %s", slot.tenant, slot.app, exc)

    def _forget(self, slot: BuildSlot, tags: list[str]) -> None:
        with db.session(self.engine) as session:
            tenant = get_tenant(session, slot.tenant)
            for tag in tags:
                builds.forget_image(session, tenant, tag)
            session.commit()


def _admit(session: Session, slot: BuildSlot) -> tuple[Tenant, Plan]:
    """The tenant and its plan, unless the tenant is suspended or a new app would take it past its plan."""
    check_name(slot.app, field="app")
    tenant = get_tenant(session, slot.tenant)
    if tenant.status == TenantStatus.SUSPENDED:
        raise Conflict(f"tenant {tenant.name!r} is suspended; resume it before changing its apps")
    builds.check_none_running(session, tenant, slot.app)  # on another daemon: this one's slot was claimed here
    plan = get_plan(session, tenant.plan)
    existing = apps.list_apps(session, tenant)
    if all(app.name != slot.app for app in existing):  # a new app must fit before minutes of building
        candidate = App(tenant_id=saved_id(tenant), name=slot.app, **_new_spec("strata/new").model_dump())
        check_quota(plan, usage_of([*existing, candidate]))
    return tenant, plan


def _app_or_none(session: Session, tenant: Tenant, name: str) -> App | None:
    try:
        return apps.get_app(session, tenant, name)
    except NotFound:
        return None


async def _finish_regardless(step: Awaitable[T]) -> T:
    """Run `step` to its end even if the task is cancelled meanwhile (the deploy of a built image happens in a
    thread, which a cancel would not stop): the outcome recorded is then what happened."""
    running = asyncio.ensure_future(step)
    while True:
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            if running.cancelled():
                raise


def _unrecorded(
    slot: BuildSlot,
    planned: _Plan,
    commit: str | None,
    state: BuildState,
    message: str | None,
    image: str | None,
    revision: int | None,
) -> BuildRead:
    """The build as it ended, when its record could not be written."""
    now = utcnow()
    return BuildRead(
        id=planned.build_id, tenant=slot.tenant, app=slot.app, state=state, source=planned.source,
        actor=planned.actor, commit=commit, image=image, revision=revision, message=message, started_at=now,
        finished_at=now,
    )  # fmt: skip


def _new_spec(image: str, port: int = DEFAULT_PORT) -> AppSpec:
    """A new app made by its first build: one replica of the defaults, on the image's port."""
    return AppSpec(image=image, port=port, replicas=1)


async def _read(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        while chunk := await asyncio.to_thread(file.read, CONTEXT_CHUNK_BYTES):
            yield chunk
