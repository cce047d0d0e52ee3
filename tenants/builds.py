"""Builds of tenants' apps from source: their records, the per-tenant names of the images they make, and the
rule that a built image runs for its own tenant only.

A build's image is tagged `strata-build/<tenant>/<app>:<build id>`: a build id is never reused (the table is
AUTOINCREMENT), so a tag never comes to name other content than the revision that runs it was deployed with.
The `strata-build/` namespace is the platform's: a reference under it is deployable only by the tenant that
owns it (`tenants.images`), and is never looked for in a registry.
"""

from collections.abc import Collection

from sqlalchemy import ColumnElement, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from tenants import audit, images
from tenants.enums import BuildSource, BuildState, ImageSource
from tenants.errors import Conflict, Invalid, NotFound
from tenants.models import Build, Tenant, TenantImage, saved_id, utcnow
from tenants.references import canonical, registry_host, split_registry
from tenants.schemas import BuildRead

BUILD_REPOSITORY = "strata-build"
INTERRUPTED = "the daemon stopped during the build; build again"
MAX_BUILDS_PER_PAGE = 1_000


def image_tag(tenant: str, app: str, build_id: int) -> str:
    """The tag a build makes: per tenant and app, unique per build."""
    return f"{BUILD_REPOSITORY}/{tenant}/{app}:{build_id}"


def tenant_of_tag(tag: str) -> str | None:
    """The tenant whose build made `tag` (`strata-build/<tenant>/...`), or None for any other reference."""
    if not is_build_reference(tag):
        return None
    parts = split_registry(tag)[1].split("/")
    return parts[1] if len(parts) > 2 else None


def cache_images(session: Session, tenant: Tenant, app: str) -> list[str]:
    """The ids of the images the tenant's own builds of `app` made (the last few: older ones are pruned),
    newest first: the only build cache a build of the app may use, so that no other tenant's cached step (and
    what it wrote) gets into its image."""
    prefix = canonical(f"{BUILD_REPOSITORY}/{tenant.name}/{app}:x")[:-1]
    query = (
        select(TenantImage)
        .where(TenantImage.tenant_id == tenant.id, TenantImage.source == ImageSource.BUILD)
        .where(col(TenantImage.reference).startswith(prefix, autoescape=True))
        .order_by(col(TenantImage.id).desc())
    )
    return list(dict.fromkeys(image.image_id for image in session.exec(query)))


def is_build_reference(reference: str) -> bool:
    """Whether `reference` names the platform's build namespace (in any spelling Docker reads as it)."""
    return registry_host(reference) == "docker.io" and split_registry(reference)[1].startswith(BUILD_REPOSITORY + "/")


def check_usable(session: Session, tenant: Tenant, reference: str) -> None:
    """Refuse a built image to any tenant but the one that built it, as an image that does not exist (which
    tenant built what stays unsaid); a reference outside `strata-build/` is for the pull rules to judge."""
    if is_build_reference(reference) and images.owned(session, tenant, canonical(reference)) is None:
        raise Invalid(
            f"tenant {tenant.name!r} has no image {reference!r}: images under {BUILD_REPOSITORY}/ are made by "
            f"the tenant's own builds (`strata apps deploy {tenant.name}/APP --build DIR`, or `git push`)",
            field="image",
        )


def check_none_running(session: Session, tenant: Tenant, app: str) -> None:
    """Refuse a second build of the app while one runs, on any daemon (each builds what it receives)."""
    running = session.exec(
        select(Build).where(Build.tenant_id == tenant.id, Build.app == app, Build.state == BuildState.BUILDING)
    ).first()
    if running is not None:
        raise _running(tenant, app, running.daemon)


def start(
    session: Session, actor: str, tenant: Tenant, app: str, source: BuildSource, commit: str | None, daemon: str
) -> Build:
    """Record a build as running on `daemon`, with its audit event; committed. `Conflict` if one of the app runs
    already: one running build per app is the database's rule (a partial unique index), so two daemons that
    received a build of one app at once never both run it."""
    build = Build(
        tenant_id=saved_id(tenant), app=app, state=BuildState.BUILDING, source=source, actor=actor, commit=commit,
        daemon=daemon,
    )  # fmt: skip
    session.add(build)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise _running(tenant, app, None) from None
    audit.record(session, actor, "build.start", tenant.name, app=app, build=build.id, commit=commit, source=source)
    session.commit()
    return build


def _running(tenant: Tenant, app: str, daemon: str | None) -> Conflict:
    where = f" (on daemon {daemon})" if daemon else ""
    return Conflict(f"a build of {app} is running{where}; wait for it to end (`strata builds list {tenant.name}`)")


def finish(
    session: Session,
    build_id: int,
    state: BuildState,
    *,
    message: str | None = None,
    image: str | None = None,
    revision: int | None = None,
) -> Build:
    """Record how a build ended, with its audit event (`build.succeeded` or `build.failed`); committed."""
    build = session.get(Build, build_id)
    if build is None:
        raise NotFound(f"no build {build_id}")  # its tenant was deleted meanwhile
    tenant = session.get(Tenant, build.tenant_id)
    build.state, build.message, build.image, build.revision = state, message, image, revision
    build.finished_at = utcnow()
    session.add(build)
    audit.record(
        session,
        build.actor,
        f"build.{state}",
        tenant.name if tenant else None,
        app=build.app,
        build=build_id,
        commit=build.commit,
        revision=revision,
        **({"message": message} if message else {}),
    )
    session.commit()
    return build


def fail_interrupted(session: Session, daemon: str) -> list[int]:
    """Builds still `building` on `daemon` when it starts were cut off by its stop: mark them failed, saying so.
    So are those of no daemon's (recorded before there were several)."""
    return _fail(session, or_(col(Build.daemon) == daemon, col(Build.daemon).is_(None)))


def fail_orphaned(session: Session, alive: Collection[str]) -> list[int]:
    """Builds still `building` on a daemon not `alive` (gone without starting again): mark them failed."""
    return _fail(session, col(Build.daemon).not_in(alive))


def _fail(session: Session, whose: ColumnElement[bool]) -> list[int]:
    running = list(session.exec(select(Build).where(Build.state == BuildState.BUILDING, whose)))
    for build in running:
        finish(session, saved_id(build), BuildState.FAILED, message=INTERRUPTED)
    return [saved_id(build) for build in running]


def older_builds(session: Session, tenant_id: int, app: str, keep: int) -> list[int]:
    """The ids of the app's builds but its newest `keep` (a window of as many: each build pushes one out)."""
    query = (
        select(Build.id)
        .where(Build.tenant_id == tenant_id, Build.app == app)
        .order_by(col(Build.id).desc())
        .offset(keep)
        .limit(keep)
    )
    return [build_id for build_id in session.exec(query) if build_id is not None]


def get_build(session: Session, tenant: Tenant, build_id: int) -> Build:
    build = session.get(Build, build_id)
    if build is None or build.tenant_id != tenant.id:
        raise NotFound(f"tenant {tenant.name!r} has no build {build_id}", field="build")
    return build


def list_builds(session: Session, tenant: Tenant | None, app: str | None = None, limit: int = 100) -> list[BuildRead]:
    """Builds newest first: one tenant's (of one app), or every tenant's for an operator."""
    query = select(Build, Tenant.name).join(Tenant, col(Tenant.id) == Build.tenant_id)
    if tenant is not None:
        query = query.where(Build.tenant_id == tenant.id)
    if app is not None:
        query = query.where(Build.app == app)
    query = query.order_by(col(Build.id).desc()).limit(min(limit, MAX_BUILDS_PER_PAGE))
    return [read(build, name) for build, name in session.exec(query)]


def read(build: Build, tenant: str) -> BuildRead:
    return BuildRead(tenant=tenant, **build.model_dump(exclude={"tenant_id"}))


def forget_image(session: Session, tenant: Tenant, reference: str) -> None:
    """The tenant's record of a built image that was removed; the caller commits."""
    owned = images.owned(session, tenant, canonical(reference))
    if owned is not None:
        session.delete(owned)
