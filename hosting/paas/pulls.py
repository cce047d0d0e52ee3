"""Which image each app's new instances are made from, and the pulls that fetch it for its tenant.

Once per app and revision, before any of its instances is created, the app's reference is resolved to an
image id of the image store (the host's engine, `Reconciler.image_store`; VM nodes get the image from it by
id through `images.ship`), by the rule of `tenants.images`:
- an image the tenant owns (pulled with its credentials or built from its source) is used by its id, unless it
  is gone from the store, or the reference names no fixed version (`:latest`, no tag) and was pulled before
  this revision was deployed: then it is pulled again (Kubernetes' `Always` for `:latest`, `IfNotPresent`
  otherwise);
- an image built or loaded here by the operator (never pulled from a registry, no tenant's build label, no
  tenant's name for it) is the platform's, for all (`is_platform_image`; builds judge the images their
  Dockerfile names by it too);
- anything else is pulled with the tenant's own login to the registry, in the background, and recorded as
  the tenant's once pulled. So an image on the engine is never proof that a tenant may run it: another
  tenant naming the same reference (or its digest) pulls it with its own credentials or is refused.

The platform's own repositories (`strata/...`, the sample images among them, and builds' `strata-build/...`)
are never pulled: Docker Hub's `strata/static` is someone else's image, and pulling it would put it under the
platform's tag. Such a reference the store lacks is the app's problem (`strata images bootstrap`), not a pull.
An app whose reference could not be resolved because the store did not answer waits the same way (no new
instances, no pull) and is resolved again at the next pass.

A pass never waits for a pull: an app whose image is not resolved yet gets no new instances (its running
revision keeps serving), and the pass after the pull ends creates them. A failed pull is retried with the
planner's backoff, its reason in the app's problem (`ImagePullBackOff: Unauthorized: ...`) and an event.
Containers are created from the image id, so a later pull of the same tag (by anyone) cannot change what a
revision runs. Progress is kept in memory only (the API shows it with the app).
"""

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Engine
from sqlmodel import select

from hosting.paas.catalog_images import built_here
from hosting.paas.images import SAMPLE_IMAGES
from hosting.paas.planner import backoff
from hosting.paas.problems import AppProblems
from hosting.paas.runtime import TENANT_LABEL, EngineError, ImageInfo, NodeRuntime, PullFailed, RegistryAuth
from tenants import db, images, registries
from tenants.builds import BUILD_REPOSITORY
from tenants.enums import ImageSource
from tenants.errors import NotFound
from tenants.instances import ActionEvent
from tenants.instances import DesiredApp as App
from tenants.models import App as AppRow
from tenants.models import Tenant, TenantImage
from tenants.references import DOCKER_HUB, canonical, is_latest, split_registry
from tenants.schemas import PullRead
from tenants.secrets import SecretBox, SecretKeyError
from tenants.tenancy import get_tenant

log = logging.getLogger(__name__)
T = TypeVar("T")

PULLING, PULLED, FAILED = "pulling", "pulled", "failed"
NEVER = math.inf  # the retry time of an app whose image is not resolved: no creates until it is
# Docker Hub namespaces the platform names its own images in: never pulled from a registry
PLATFORM_NAMESPACES = ("strata/", f"{BUILD_REPOSITORY}/")


@dataclass
class _Pull:
    """One app's pull for one revision: running, done, or failed and waiting for its retry."""

    app: App
    status: str = PULLING
    done_bytes: int = 0
    total_bytes: int = 0
    detail: str = ""
    reason: str = ""
    image_id: str = ""
    started: float = field(default_factory=time.monotonic)
    failures: int = 0
    retry_at: float = 0.0
    reported: bool = False  # its outcome is in an event already
    task: asyncio.Task[None] | None = None

    def read(self) -> PullRead:
        status = FAILED if self.status == FAILED else PULLING
        return PullRead(
            reference=self.app.image, revision=self.app.revision, status=status, done_bytes=self.done_bytes,
            total_bytes=self.total_bytes, detail=self.detail,
        )  # fmt: skip


@dataclass(frozen=True)
class _Hold:
    """An app not resolved at this pass: no pull, no new instances; resolved again at the next. `problem` is what
    the app is told, or None when the store did not answer (no fault of the app's; logged)."""

    problem: str | None = None


@dataclass(frozen=True)
class _Facts:
    """What the database says about one app's reference: the tenant's image of it, and when the revision was
    deployed."""

    mine: TenantImage | None
    deployed_at: datetime | None


def is_platform_reference(reference: str) -> bool:
    """Whether `reference` names the platform's own repositories (in any spelling Docker reads as them): a
    sample image, or anything under `strata/` or `strata-build/` on Docker Hub. Never pulled from a registry."""
    host, rest = split_registry(reference)
    samples = {canonical(sample) for sample in SAMPLE_IMAGES.values()}
    return host == DOCKER_HUB and (rest.startswith(PLATFORM_NAMESPACES) or canonical(reference) in samples)


def platform_image_missing(reference: str, *, present: bool = False) -> str:
    """The problem of an app naming a platform reference the store has no platform image for; `present`: the
    store has an image by that name, but not the platform's (pulled from a registry, or a tenant's)."""
    where = "is not the platform's on the image store" if present else "is not on the image store"
    if split_registry(reference)[1].startswith(f"{BUILD_REPOSITORY}/"):
        return f"{reference} is a build's image and {where}: build the app again"
    if canonical(reference) in {canonical(sample) for sample in SAMPLE_IMAGES.values()}:
        return f"{reference} is the platform's image and {where}: `strata images bootstrap`"
    if built_here(reference):
        return f"{reference} is the platform's image and {where}: deploy its catalog template again (that builds it)"
    return f"{reference} is the platform's image and {where}: `strata images load FILE.tar`"


def is_platform_image(info: ImageInfo, reference: str, owned: set[str]) -> bool:
    """Whether an image of the store is the platform's own, usable by every tenant: built or loaded here (never
    pulled from a registry, whatever became of the tenant that pulled it; no tenant's build label), named by
    a reference no tenant owns, and tagged with a name no tenant owns (not reached through a tenant's image's
    digest or id)."""
    return (
        not info.digests
        and TENANT_LABEL not in info.labels
        and reference not in owned
        and any(canonical(tag) not in owned for tag in info.tags)
    )


class ImagePuller:
    """Resolves apps' images for the reconciler (`resolve`, once per pass) and runs their pulls on `store`
    with logins decrypted by `secrets`; `nudge` asks for a pass when a pull ends."""

    def __init__(
        self,
        engine: Engine,
        store: NodeRuntime,
        secrets: SecretBox | None,
        clock: Callable[[], float],
        nudge: Callable[[], None],
    ) -> None:
        self.engine, self.store, self.secrets, self.clock, self.nudge = engine, store, secrets, clock, nudge
        self._resolved: dict[int, tuple[int, str]] = {}  # app id -> (revision, the image id it is made from)
        self._pulls: dict[int, _Pull] = {}  # app id -> its pull for its current revision
        self._locks: dict[str, asyncio.Lock] = {}  # canonical reference -> one pull of it at a time
        self._in_flight: Counter[str] = Counter()  # canonical references being pulled: owned, not the platform's
        self._retry: set[str] = set()  # tenants whose logins changed: their failed pulls go again at once

    def retry_soon(self, tenant: str) -> None:
        """Try the tenant's failed pulls at the next pass rather than after their backoff: its registry logins
        changed. Safe from any thread (the API's): it only adds to a set that `resolve` reads on the loop."""
        self._retry.add(tenant)

    def progress(self) -> dict[tuple[str, str], PullRead]:
        """(tenant, app) -> its pull, while it runs or after it failed."""
        return {(p.app.tenant, p.app.name): p.read() for p in self._pulls.values() if p.status != PULLED}

    async def resolve(
        self, desired: list[App], events: list[ActionEvent], problems: AppProblems
    ) -> tuple[list[App], dict[int, float]]:
        """The apps with their image ids, and (app id -> never) for those whose image is not resolved yet;
        starts, retries and reports pulls (into `events` and `problems`)."""
        self._forget({app.app_id for app in desired})
        while self._retry:
            tenant = self._retry.pop()
            for pull in self._pulls.values():
                if pull.app.tenant == tenant and pull.status == FAILED and pull.reported:
                    pull.retry_at = 0.0
        undecided = [
            app for app in desired
            if app.replicas > 0 and self._resolved.get(app.app_id, (0, ""))[0] != app.revision
            and (app.app_id not in self._pulls or self._pulls[app.app_id].app.revision != app.revision)
        ]  # fmt: skip
        decided = await self._decide(undecided) if undecided else {}
        resolved, waiting = [], {}
        for app in desired:
            image = self._image(app, decided, events, problems)
            if image is not None:
                resolved.append(replace(app, image=image))
            else:
                resolved.append(app)
                waiting[app.app_id] = NEVER
        return resolved, waiting

    def _image(
        self, app: App, decided: dict[int, str | _Hold | None], events: list[ActionEvent], problems: AppProblems
    ) -> str | None:
        """The app's image id, or None while it is pulled (or waits to be pulled again)."""
        known = self._resolved.get(app.app_id)
        if known is not None and known[0] == app.revision:
            return known[1]
        if app.replicas == 0:
            return app.image  # nothing is created: nothing to resolve
        pull = self._pulls.get(app.app_id)
        if pull is not None and pull.app.revision != app.revision:
            self._cancel(self._pulls.pop(app.app_id))  # a newer revision: its own image
            pull = None
        decision = decided.get(app.app_id)
        if pull is None and isinstance(decision, str):
            self._resolved[app.app_id] = (app.revision, decision)
            return decision
        if pull is None and isinstance(decision, _Hold):
            if decision.problem is not None:
                problems.pull_failed(app, decision.problem)
            return None  # decided again at the next pass
        if pull is None:
            pull = self._pulls[app.app_id] = _Pull(app)
            self._start(pull)
        elif pull.status == PULLED:
            del self._pulls[app.app_id]
            self._resolved[app.app_id] = (app.revision, pull.image_id)
            seconds = round(time.monotonic() - pull.started, 1)
            detail = {"image_id": pull.image_id, "bytes": pull.total_bytes, "seconds": seconds}
            events.append(ActionEvent("image.pulled", app.tenant, {"app": app.name, "reference": app.image, **detail}))
            return pull.image_id
        elif pull.status == FAILED and not pull.reported:
            self._report(pull, events, problems)
        elif pull.status == FAILED and self.clock() >= pull.retry_at:
            pull.status, pull.detail, pull.started = PULLING, "", time.monotonic()
            self._start(pull)
        return None

    def _report(self, pull: _Pull, events: list[ActionEvent], problems: AppProblems) -> None:
        pull.failures += 1
        delay = backoff(pull.failures)
        pull.retry_at, pull.reported = self.clock() + delay, True
        app, times = pull.app, f"tried {pull.failures} time{'s' if pull.failures > 1 else ''}"
        problems.pull_failed(app, f"ImagePullBackOff: {pull.reason}: {pull.detail} ({times}, again in {delay:.0f} s)")
        detail = {"app": app.name, "reference": app.image, "reason": pull.reason, "message": pull.detail}
        events.append(ActionEvent("image.pull_failed", app.tenant, {**detail, "attempts": pull.failures}))

    def _start(self, pull: _Pull) -> None:
        pull.reported = False
        pull.task = asyncio.get_running_loop().create_task(self._pull(pull), name=f"pull {pull.app.image}")

    async def _pull(self, pull: _Pull) -> None:
        app, reference = pull.app, canonical(pull.app.image)
        self._in_flight[reference] += 1
        lock = self._locks.setdefault(reference, asyncio.Lock())
        try:
            if is_platform_reference(app.image):  # `_decide` holds such an app; this is the last word
                raise PullFailed("Refused", platform_image_missing(app.image))
            async with lock:  # one tag, one pull at a time
                auth = await asyncio.to_thread(self._login, app)
                async with _closing(self.store.pull(app.image, auth)) as progresses:  # closed if cancelled
                    async for progress in progresses:
                        pull.done_bytes, pull.total_bytes = progress.done_bytes, progress.total_bytes
                        pull.detail = progress.status
                info = await self.store.image(app.image)
                if info is None:
                    raise PullFailed("Failed", f"pulling {app.image}: the engine does not have it after the pull")
                await asyncio.to_thread(self._record, app, reference, info.id, info.size_bytes)
            pull.status, pull.image_id = PULLED, info.id
        except PullFailed as exc:
            pull.status, pull.reason, pull.detail = FAILED, exc.reason, str(exc)
        except SecretKeyError as exc:  # the operator's to fix: its path and remedy go to the log, not the tenant
            log.error("pulling %s for %s/%s: %s", app.image, app.tenant, app.name, exc)
            pull.status, pull.reason, pull.detail = FAILED, "Failed", f"pulling {app.image}: {exc.public}"
        except (EngineError, NotFound) as exc:
            pull.status, pull.reason, pull.detail = FAILED, "Failed", f"pulling {app.image}: {exc}"
        except Exception:
            log.exception("pulling %s for %s/%s failed", app.image, app.tenant, app.name)
            pull.status, pull.reason, pull.detail = FAILED, "Failed", f"pulling {app.image}: internal error"
        finally:
            self._in_flight[reference] -= 1
            if not self._in_flight[reference]:  # idle: what is kept per reference goes (else it grows forever)
                del self._in_flight[reference]
                if not lock.locked() and self._locks.get(reference) is lock:
                    del self._locks[reference]
            self.nudge()

    def _login(self, app: App) -> RegistryAuth | None:
        if self.secrets is None:
            return None
        with db.session(self.engine) as session:
            login = registries.auth_for(session, self.secrets, get_tenant(session, app.tenant), app.image)
        return None if login is None else RegistryAuth(login.username, login.password)

    def _record(self, app: App, reference: str, image_id: str, size_bytes: int) -> None:
        with db.session(self.engine) as session:
            images.record(session, get_tenant(session, app.tenant), reference, image_id, ImageSource.PULL, size_bytes)
            session.commit()

    async def _decide(self, apps: list[App]) -> dict[int, str | _Hold | None]:
        """App id -> the image id to create it from, None: pull it, or `_Hold`: neither (see the module's rule)."""
        facts, owned = await asyncio.to_thread(self._facts, apps)
        owned |= {reference for reference, count in self._in_flight.items() if count}
        decided: dict[int, str | _Hold | None] = {}
        for app in apps:
            mine, reference = facts[app.app_id].mine, canonical(app.image)
            platform = is_platform_reference(app.image)  # never pulled: the store has it, or the app waits
            try:
                if mine is not None:
                    deployed_at = facts[app.app_id].deployed_at
                    fresh = (
                        mine.source != ImageSource.PULL  # a build is never pulled
                        or platform
                        or not is_latest(reference)
                        or (deployed_at is not None and mine.created_at >= deployed_at)
                    )
                    kept = fresh and await self.store.image(mine.image_id) is not None
                    if kept:
                        decided[app.app_id] = mine.image_id
                    else:
                        decided[app.app_id] = _Hold(platform_image_missing(app.image)) if platform else None
                    continue
                info = await self.store.image(app.image)
            except EngineError as exc:  # the store does not answer: the app waits, and is resolved again next pass
                log.warning("resolving %s for %s/%s: %s", app.image, app.tenant, app.name, exc)
                decided[app.app_id] = _Hold()
                continue
            if info is not None and is_platform_image(info, reference, owned):
                decided[app.app_id] = info.id
            elif platform:
                decided[app.app_id] = _Hold(platform_image_missing(app.image, present=info is not None))
            else:
                decided[app.app_id] = None
        return decided

    def _facts(self, apps: list[App]) -> tuple[dict[int, _Facts], set[str]]:
        with db.session(self.engine) as session:
            owned = set(session.exec(select(TenantImage.reference)))
            tenants = {t.name: t for t in session.exec(select(Tenant))}
            facts = {}
            for app in apps:
                tenant, row = tenants.get(app.tenant), session.get(AppRow, app.app_id)
                mine = images.owned(session, tenant, canonical(app.image)) if tenant is not None else None
                facts[app.app_id] = _Facts(mine, row.updated_at if row is not None else None)
        return facts, owned

    def _forget(self, live: set[int]) -> None:
        """Drop what is held for apps that are gone (their pulls are cancelled)."""
        for app_id in [app_id for app_id in self._pulls if app_id not in live]:
            self._cancel(self._pulls.pop(app_id))
        self._resolved = {app_id: value for app_id, value in self._resolved.items() if app_id in live}

    @staticmethod
    def _cancel(pull: _Pull) -> None:
        if pull.task is not None and not pull.task.done():
            pull.task.cancel()

    async def close(self) -> None:
        """Cancel every pull (the daemon stops)."""
        tasks = [p.task for p in self._pulls.values() if p.task is not None and not p.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@asynccontextmanager
async def _closing(iterator: AsyncIterator[T]) -> AsyncGenerator[AsyncIterator[T], None]:
    """`contextlib.aclosing` for a runtime's `pull` (typed an iterator, made a generator): on any exit, even a
    cancelled pull task's, the generator is closed, and with it the engine's response it reads."""
    try:
        yield iterator
    finally:
        if isinstance(iterator, AsyncGenerator):
            await iterator.aclose()
