"""Builds of tenants' apps from source, deployed as a new revision when they succeed (Dokku's model: the build
is the transaction, and a failed one leaves the running revision as it was).

`Builder` is held by the daemon and builds on the platform's image store (the host's engine), from which the
reconciler ships images to the nodes that need them. The order of a build, and why:

1. `claim` the app's one slot, before the context is even uploaded: a second build of the app is refused at
   once ("a build of web is running"); the slot goes with the first build's end, or with its client.
2. `start` checks what can be checked before building — the tenant is active, a new app fits the plan, the
   context is a tar with a `Dockerfile`, and each image it names (`FROM`, `COPY --from=`, and the `ONBUILD`
   triggers of those) is an earlier stage, `scratch`, the tenant's own (`tenants.images`) or the platform's
   (`pulls.is_platform_image`): the engine would resolve any image it holds, another tenant's build or
   private pull among them — records the build (`building`) and starts it in a task of its own, so
   a client that goes away cancels it (which stops the engine's build) rather than leaving it unowned.
3. The build runs capped by the plan's `build_cpu_millicores`/`build_memory_mib`, its output written to
   `<builds dir>/<id>.log` and streamed to the client; the image is tagged `strata-build/<tenant>/<app>:<id>`.
   Its only build cache is the app's own earlier build images (`cache_from`; a first build uses none): the
   engine's cache is shared by every tenant, and another's cached `RUN` step would bring its output along.
4. The image becomes the tenant's (`tenants.images`) and the app's new revision (its other settings kept; a
   new app gets the image's lowest EXPOSEd port, else 8080, and one replica) with its commit — unless the app
   already runs that very image, which changes nothing ("unchanged").
5. Older build images of the app beyond the last `keep` are removed (never the one its revision runs), so the
   app's share of the engine's images and build cache stays bounded. A deleted tenant's build images go with
   it: the reconciler sweeps them (`sweep_images`) once its containers are gone.
"""

import asyncio
import contextlib
import logging
import os
import tarfile
import tempfile
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import select

from hosting.paas.dockerfile import NamedImage, named_images, trigger_images
from hosting.paas.pulls import is_platform_image
from hosting.paas.runtime import (
    PLATFORM_LABEL,
    TENANT_LABEL,
    BuildFailed,
    BuildLimits,
    Container,
    EngineError,
    EngineUnavailable,
    ImageInfo,
    NodeRuntime,
)
from tenants import apps, builds, db, images
from tenants.enums import BuildSource, BuildState, ImageSource, TenantStatus
from tenants.errors import Conflict, DomainError, Invalid
from tenants.models import App, Tenant, TenantImage, saved_id
from tenants.names import check_name
from tenants.quotas import check_quota, usage_of
from tenants.references import canonical
from tenants.schemas import AppSpec, BuildRead
from tenants.tenancy import get_plan, get_tenant

log = logging.getLogger(__name__)

KEEP_BUILD_IMAGES = 3  # of each app, the newest; older ones are removed after a successful build
DEFAULT_PORT = 8080  # a new app's port when its image EXPOSEs none
CONTEXT_CHUNK_BYTES = 256 * 1024
MAX_DOCKERFILE_BYTES = 1024 * 1024
NO_DOCKERFILE = (
    "the build context has no Dockerfile at its top; add one, e.g. for a static site:\n"
    "    FROM strata/static\n"
    "    COPY . /www"
)
CANCELLED = "the build was cancelled: its client went away"

Event = str | BuildRead  # a line of the build's output, then the build as it ended


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


@dataclass
class BuildJob:
    """A build running in its own task; `events` streams it. Its context file is removed when it ends."""

    build_id: int
    task: "asyncio.Task[BuildRead]"
    queue: "asyncio.Queue[Event]" = field(repr=False)

    async def events(self) -> AsyncGenerator[Event, None]:
        """The build's output lines, then its `BuildRead`. Leaving early (the client went away) cancels the
        build, which stops it on the engine and marks it failed."""
        try:
            while True:
                item = await self.queue.get()
                yield item
                if isinstance(item, BuildRead):
                    return
        finally:
            if not self.task.done():
                self.task.cancel()

    async def result(self) -> BuildRead:
        return await self.task


@dataclass(frozen=True)
class _Plan:
    """What `start` found out before building: the caps, and whether the app exists."""

    limits: BuildLimits
    build_id: int
    actor: str
    cache_from: list[str]  # the app's own earlier build images: its only build cache (none: no cache at all)


class Builder:
    """Builds on `store` (None: the platform has no local engine, and builds are refused), one at a time per
    app; logs under `directory`; deploys with `platform_domain` (for the hostname checks of a deploy); labels
    its images with `platform` (the platform's id), by which the reconciler finds those of deleted tenants."""

    def __init__(
        self,
        engine: Engine,
        store: NodeRuntime | None,
        directory: Path,
        *,
        platform_domain: str,
        platform: str | None = None,
        keep: int = KEEP_BUILD_IMAGES,
    ) -> None:
        self.engine = engine
        self.store = store
        self.directory = directory
        self.platform_domain = platform_domain
        self.platform = platform
        self.keep = keep
        self._building: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[BuildRead]] = set()

    def recover(self) -> list[int]:
        """At the daemon's start: builds it was running when it stopped are failed, saying so."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with db.session(self.engine) as session:
            return builds.fail_interrupted(session)

    def log_path(self, build_id: int) -> Path:
        return self.directory / f"{build_id}.log"

    def context_path(self) -> Path:
        """A new file to spool an uploaded context to (the build removes it when it ends)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(prefix="context-", suffix=".tar", dir=self.directory)
        os.close(fd)
        return Path(name)

    def claim(self, tenant: str, app: str) -> BuildSlot:
        """The app's build slot, or `Conflict` at once if a build of it runs."""
        if self.store is None:
            raise Conflict("builds need the host's Docker engine: this daemon runs without it (--no-local-node)")
        key = (tenant, app)
        if key in self._building:
            raise Conflict(f"a build of {app} is running; wait for it to end (`strata builds list {tenant}`)")
        self._building.add(key)
        return BuildSlot(lambda: self._building.discard(key), tenant, app)

    async def start(
        self, slot: BuildSlot, *, actor: str, context: Path, source: BuildSource, commit: str | None
    ) -> BuildJob:
        """Check, record and start the build of `slot`'s app from the tar at `context`. Refusals (a suspended
        tenant, a quota, no Dockerfile) raise a `DomainError` and leave nothing behind but the slot, which the
        caller releases; once started, the build owns the slot and the context file."""
        dockerfile = await asyncio.to_thread(_check_context, context)
        await self._check_images(slot.tenant, dockerfile)
        planned = await asyncio.to_thread(self._prepare, slot, actor, source, commit)
        queue: asyncio.Queue[Event] = asyncio.Queue()
        task = asyncio.create_task(self._run(slot, planned, context, commit, queue), name=f"build-{planned.build_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return BuildJob(planned.build_id, task, queue)

    async def _check_images(self, tenant: str, dockerfile: str) -> None:
        """`Invalid` unless every image the Dockerfile names (and its base images' ONBUILD triggers) is the
        tenant's own or the platform's: the engine's builder would resolve any image it holds."""
        assert self.store is not None  # claim refuses builds without one
        named = named_images(dockerfile)
        if not named:
            return
        mine, owned = await asyncio.to_thread(self._references, tenant)
        for image in named:
            info = await self.store.image(image.name)
            reference = canonical(image.name)
            if reference not in mine and (info is None or not is_platform_image(info, reference, owned)):
                raise Invalid(_not_yours(image), field="context")
            for trigger in trigger_images(info.onbuild if info is not None and image.instruction == "FROM" else []):
                found = await self.store.image(trigger.name)
                reference = canonical(trigger.name)
                if reference not in mine and (found is None or not is_platform_image(found, reference, owned)):
                    raise Invalid(f"{image.describe()}: its ONBUILD trigger: {_not_yours(trigger)}", field="context")

    def _references(self, tenant: str) -> tuple[set[str], set[str]]:
        """(the references the tenant owns, those any tenant owns)."""
        with db.session(self.engine) as session:
            found = get_tenant(session, tenant)
            owned = {(row.tenant_id, row.reference) for row in session.exec(select(TenantImage))}
        return {reference for owner, reference in owned if owner == found.id}, {reference for _, reference in owned}

    def _prepare(self, slot: BuildSlot, actor: str, source: BuildSource, commit: str | None) -> _Plan:
        check_name(slot.app, field="app")
        with db.session(self.engine) as session:
            tenant = get_tenant(session, slot.tenant)
            if tenant.status == TenantStatus.SUSPENDED:
                raise Conflict(f"tenant {tenant.name!r} is suspended; resume it before changing its apps")
            plan = get_plan(session, tenant.plan)
            existing = apps.list_apps(session, tenant)
            if all(app.name != slot.app for app in existing):  # a new app must fit before minutes of building
                candidate = App(tenant_id=saved_id(tenant), name=slot.app, **_new_spec("strata/new").model_dump())
                check_quota(plan, usage_of([*existing, candidate]))
            cache_from = builds.cache_images(session, tenant, slot.app)
            build = builds.start(session, actor, tenant, slot.app, source, commit)
            limits = BuildLimits(plan.build_cpu_millicores, plan.build_memory_mib)
            return _Plan(limits, saved_id(build), actor, cache_from)

    async def _run(
        self, slot: BuildSlot, planned: _Plan, context: Path, commit: str | None, queue: "asyncio.Queue[Event]"
    ) -> BuildRead:
        assert self.store is not None  # claim refuses builds without one
        store, build_id = self.store, planned.build_id
        tag = builds.image_tag(slot.tenant, slot.app, build_id)
        # Each label is a LABEL step of the legacy builder (a container each): only those something reads, the
        # platform's (`sweep_images`) and the tenant's (`pulls.is_platform_image`); app and commit are the Build's.
        labels = {**({PLATFORM_LABEL: self.platform} if self.platform else {}), TENANT_LABEL: slot.tenant}
        state, image, revision = BuildState.FAILED, None, None
        message: str | None = CANCELLED
        with self.log_path(build_id).open("w", buffering=1) as log_file:
            try:
                building = store.build(
                    _read(context), tag, limits=planned.limits, labels=labels, cache_from=planned.cache_from
                )
                async with aclosing(building) as lines:
                    async for line in lines:
                        log_file.write(line + "\n")
                        queue.put_nowait(line)
                built = await store.image(tag)
                if built is None:
                    raise BuildFailed(f"the image {tag} vanished right after it was built")
                image, revision, message = await self._deploy(slot, planned.actor, tag, built, commit)
                state = BuildState.SUCCEEDED
                await self._prune(slot)
            except (DomainError, EngineError) as exc:  # BuildFailed among them
                message = exc.message if isinstance(exc, DomainError) else str(exc)
            except asyncio.CancelledError:  # its client went away (closing the engine's build): it ends as failed
                if state != BuildState.SUCCEEDED:
                    message = CANCELLED
            finally:
                log_file.write(f"{state}: {message}\n" if message else f"{state}: revision {revision}\n")
                context.unlink(missing_ok=True)
                slot.release()
                result = await asyncio.to_thread(self._finish, build_id, state, message, image, revision)
                queue.put_nowait(result)
        return result

    def _finish(
        self, build_id: int, state: BuildState, message: str | None, image: str | None, revision: int | None
    ) -> BuildRead:
        with db.session(self.engine) as session:
            build = builds.finish(session, build_id, state, message=message, image=image, revision=revision)
            tenant = session.get(Tenant, build.tenant_id)
            return builds.read(build, tenant.name if tenant else "")

    async def _deploy(
        self, slot: BuildSlot, actor: str, tag: str, built: ImageInfo, commit: str | None
    ) -> tuple[str, int, str | None]:
        """(image, revision, message) of the deploy of the built image; message "unchanged" when the app runs
        that image already."""
        assert self.store is not None
        current = await asyncio.to_thread(self._current, slot)
        if current is not None:
            running = await self.store.image(current.image)
            if running is not None and running.id == built.id:
                with contextlib.suppress(EngineError):
                    await self.store.delete_image(tag)  # only a second name of the image the app runs
                return current.image, current.revision, f"unchanged: {slot.app} runs this image already"
        revision = await asyncio.to_thread(self._deploy_revision, slot, actor, tag, built, commit)
        return tag, revision, None

    def _current(self, slot: BuildSlot) -> App | None:
        with db.session(self.engine) as session:
            tenant = get_tenant(session, slot.tenant)
            return next((app for app in apps.list_apps(session, tenant) if app.name == slot.app), None)

    def _deploy_revision(self, slot: BuildSlot, actor: str, tag: str, built: ImageInfo, commit: str | None) -> int:
        """Record the image as the tenant's and deploy it, in one transaction."""
        with db.session(self.engine) as session:
            tenant = get_tenant(session, slot.tenant)
            images.record(session, tenant, canonical(tag), built.id, ImageSource.BUILD, built.size_bytes)
            current = next((app for app in apps.list_apps(session, tenant) if app.name == slot.app), None)
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
        used by a container (an old revision draining) is left for the next build's pruning."""
        assert self.store is not None
        prefix = f"{builds.BUILD_REPOSITORY}/{slot.tenant}/{slot.app}:"
        current = await asyncio.to_thread(self._current, slot)
        tags = {tag for image in await self.store.images() for tag in image.tags if tag.startswith(prefix)}
        ordered = sorted(tags, key=lambda tag: int(tag.rpartition(":")[2]) if tag.rpartition(":")[2].isdigit() else 0)
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

    def _forget(self, slot: BuildSlot, tags: list[str]) -> None:
        with db.session(self.engine) as session:
            tenant = get_tenant(session, slot.tenant)
            for tag in tags:
                builds.forget_image(session, tenant, tag)
            session.commit()


async def sweep_images(
    runtimes: Iterable[NodeRuntime], platform: str, tenants: set[str], containers: Iterable[Container]
) -> list[str]:
    """Remove, on each of `runtimes`, the build images (this platform's, by their label) of tenants not in
    `tenants` (those that exist) and with no container on that engine (of `containers`, those still present):
    a deleted tenant's images must not outlive it. An image some container still uses is refused by the
    engine and left for the next sweep. Returns the tags removed, as `node: tag`."""
    used: dict[str, set[str]] = defaultdict(set)  # node -> its tenants with a container there
    for container in containers:
        used[container.node].add(container.tenant)
    removed = []
    for runtime in runtimes:
        try:
            for image in await runtime.images():
                if image.labels.get(PLATFORM_LABEL) != platform:
                    continue
                for tag in image.tags:
                    owner = builds.tenant_of_tag(tag)
                    if owner is None or owner in tenants or owner in used[runtime.name]:
                        continue
                    try:
                        await runtime.delete_image(tag)
                    except EngineUnavailable:
                        raise
                    except EngineError as exc:  # a container uses it still: next time
                        log.info("build image %s of deleted tenant %s kept for now: %s", tag, owner, exc)
                        continue
                    removed.append(f"{runtime.name}: {tag}")
                    log.info("removed build image %s on %s: its tenant %s is deleted", tag, runtime.name, owner)
        except EngineUnavailable as exc:
            log.warning("sweeping the build images of %s: %s", runtime.name, exc)
    return removed


def _new_spec(image: str, port: int = DEFAULT_PORT) -> AppSpec:
    """A new app made by its first build: one replica of the defaults, on the image's port."""
    return AppSpec(image=image, port=port, replicas=1)


def _check_context(path: Path) -> str:
    """The text of the Dockerfile at the top of the tar (its last entry, as extracting it leaves), or `Invalid`
    saying what to do."""
    try:
        with tarfile.open(path) as tar:
            members = [member for member in tar if member.isfile() or member.issym() or member.islnk()]
            found = [member for member in members if member.name.removeprefix("./").lstrip("/") == "Dockerfile"]
            if not found:
                raise Invalid(NO_DOCKERFILE, field="context")
            file = tar.extractfile(found[-1])
            data = file.read(MAX_DOCKERFILE_BYTES + 1) if file is not None else b""
    except (tarfile.TarError, KeyError):
        raise Invalid("the build context must be a tar archive (application/x-tar)", field="context") from None
    if len(data) > MAX_DOCKERFILE_BYTES:
        raise Invalid(f"the Dockerfile is over {MAX_DOCKERFILE_BYTES // 1024} KiB", field="context")
    return data.decode(errors="replace")


def _not_yours(image: NamedImage) -> str:
    """Why a build may not use `image`, and what to do."""
    return (
        f"{image.describe()}: not one of your images nor the platform's; deploy it once with "
        f"`strata apps deploy --image {image.name}` so it is pulled with your credentials, or build FROM an "
        "image of yours"
    )


async def _read(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        while chunk := await asyncio.to_thread(file.read, CONTEXT_CHUNK_BYTES):
            yield chunk
