"""The control API: JSON over HTTP, described by its own OpenAPI schema at `/openapi.json`."""

from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strata.api import (
    app_routes,
    backup_routes,
    build_routes,
    catalog_routes,
    cert_routes,
    credential_routes,
    errors,
    event_routes,
    exec_routes,
    member_routes,
    metrics_routes,
    overview_routes,
    registry_routes,
    runtime_routes,
    service_routes,
    status_routes,
    tenant_routes,
    usage_routes,
    volume_routes,
)
from strata.api.deps import Platform
from tenants.schemas import ErrorBody, Health

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 422, 429, 503)
}


CHANGING_METHODS = frozenset({"POST", "PUT", "DELETE"})


def create_app(platform: Platform) -> FastAPI:
    """The API over `platform`, which its routes reach through the dependencies of `strata.api.deps`."""
    app = FastAPI(title="Strata control API", version=version("strata"), responses=ERROR_RESPONSES)
    platform.install(app)
    errors.install(app)
    app.add_middleware(NudgeOnChange, nudge=platform.nudge)

    @app.get("/healthz", tags=["health"])
    def healthz() -> Health:
        """Answers without a token: is the daemon up, and which version."""
        return Health(status="ok", version=app.version)

    for module in (
        tenant_routes,
        overview_routes,
        app_routes,
        build_routes,
        credential_routes,
        member_routes,
        registry_routes,
        cert_routes,
        event_routes,
        runtime_routes,
        exec_routes,
        volume_routes,
        backup_routes,
        service_routes,
        status_routes,
        catalog_routes,
        usage_routes,
        metrics_routes,
    ):
        app.include_router(module.router)
    return app


class NudgeOnChange:
    """After any successful change (the desired state may differ now), wake the reconciler at once."""

    def __init__(self, app: ASGIApp, nudge: Callable[[], None]) -> None:
        self.app = app
        self.nudge = nudge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in CHANGING_METHODS:
            await self.app(scope, receive, send)
            return
        status = 500

        async def remember_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, remember_status)
        if status < 400:
            self.nudge()
