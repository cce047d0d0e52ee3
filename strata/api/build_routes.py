"""Builds from source: `POST /tenants/{tenant}/apps/{app}/builds` takes a tar of the build context and answers
the build's output as it runs (NDJSON), then the build; the listing and each build's log.

Refusals before the build starts are ordinary JSON errors (409 a build of the app is running, 429 as many builds
of the tenant or the platform as may run at once, 422 no Dockerfile, 403 a quota, 404, 503 no engine or disk
space for builds); once the answer streams, a failure is the final line's `build.state == "failed"` with its message.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy import Engine

from hosting.paas.build_output import BuildJob, Event
from hosting.paas.builds import MAX_CONTEXT_BYTES
from strata.api.deps import DB, Builds, Caller, DbEngine, RowId, TenantName, listing_scope
from tenants import builds, db
from tenants.enums import BuildSource
from tenants.errors import Invalid, NotFound
from tenants.names import check_name
from tenants.schemas import BuildRead
from tenants.tenancy import get_tenant

router = APIRouter(tags=["builds"])

COMMIT_PATTERN = "^[0-9a-f]{4,64}$"  # a git commit id (SHA-1 or SHA-256), abbreviated or not
MAX_LISTED = 1_000
Limit = Annotated[int, Query(ge=1, le=MAX_LISTED, description="at most this many, newest first")]

TAR_BODY = {"requestBody": {"content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}}
NDJSON_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": 'one JSON object a line: {"log": LINE} for each line of output, then {"build": BuildRead}',
        "content": {"application/x-ndjson": {}},
    }
}


@router.post(
    "/tenants/{tenant}/apps/{app}/builds",
    openapi_extra=TAR_BODY,
    responses=NDJSON_ANSWER,
    response_class=StreamingResponse,
)
async def build_app(
    request: Request,
    engine: DbEngine,
    builder: Builds,
    principal: Caller,
    tenant: TenantName,
    app: str,
    commit: Annotated[str | None, Query(pattern=COMMIT_PATTERN, description="the git commit built")] = None,
    source: BuildSource = BuildSource.UPLOAD,
) -> StreamingResponse:
    """Build the app from the tar of its context (the body, with a `Dockerfile` at its top) and deploy it as
    a new revision: a new app is created (plan permitting) on the image's EXPOSEd port, else 8080. One build per
    app at a time; the build is capped by the plan and stopped when the client goes away."""
    check_name(app, field="app")
    await asyncio.to_thread(_check_tenant, engine, tenant)
    slot = builder.claim(tenant, app)  # before the upload: a second build, or one too many, is refused at once
    context: Path | None = None
    try:
        await asyncio.to_thread(builder.admit, slot)  # a suspended tenant, a new app past the plan: before it too
        context = builder.context_path()
        await _spool(request, context)
        job = await builder.start(slot, actor=principal.actor, context=context, source=source, commit=commit)
    except BaseException:
        slot.release()
        if context is not None:
            context.unlink(missing_ok=True)
        raise
    return StreamingResponse(_ndjson(job), media_type="application/x-ndjson")


@router.get("/builds")
def list_all_builds(
    session: DB, principal: Caller, tenant: str | None = None, app: str | None = None, limit: Limit = 100
) -> list[BuildRead]:
    """Builds newest first: every tenant's for an operator (or `tenant`'s), one's own for a tenant."""
    name = listing_scope(principal, tenant)
    return builds.list_builds(session, get_tenant(session, name) if name else None, app, limit)


@router.get("/tenants/{tenant}/builds")
def list_builds(session: DB, tenant: TenantName, app: str | None = None, limit: Limit = 100) -> list[BuildRead]:
    """The tenant's builds newest first (of one app with `app`)."""
    return builds.list_builds(session, get_tenant(session, tenant), app, limit)


@router.get("/tenants/{tenant}/builds/{build_id}/log", response_class=FileResponse)
def build_log(session: DB, builder: Builds, tenant: TenantName, build_id: RowId) -> FileResponse:
    """The build's output as it was streamed (so far, while it runs), and how it ended."""
    builds.get_build(session, get_tenant(session, tenant), build_id)
    path = builder.log_path(build_id)
    if not path.exists():
        raise NotFound(f"build {build_id} has no log (it was removed)", field="build")
    return FileResponse(path, media_type="text/plain; charset=utf-8")


def _check_tenant(engine: Engine, tenant: str) -> None:
    with db.session(engine) as session:
        get_tenant(session, tenant)


async def _spool(request: Request, path: Path) -> None:
    size = 0
    with path.open("wb") as file:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_CONTEXT_BYTES:
                raise Invalid(
                    f"the build context is over {MAX_CONTEXT_BYTES // 1024**2} MiB; leave out what the build does "
                    "not need with a .dockerignore",
                    field="body",
                )
            await asyncio.to_thread(file.write, chunk)
    if size == 0:
        raise Invalid("the body must be a tar of the build context (application/x-tar)", field="body")


async def _ndjson(job: BuildJob) -> AsyncIterator[str]:
    """The job's events as NDJSON; leaving early (the client went away) cancels the build."""
    async with aclosing(job.events()) as events:
        async for item in events:
            yield _line(item)


def _line(item: Event) -> str:
    if isinstance(item, BuildRead):
        return json.dumps({"build": item.model_dump(mode="json")}) + "\n"
    return json.dumps({"log": item}) + "\n"
