"""The control API: JSON over HTTP, described by its own OpenAPI schema at `/openapi.json`."""

from importlib.metadata import version

from fastapi import FastAPI
from sqlalchemy import Engine

from strata.api import app_routes, credential_routes, errors, event_routes, tenant_routes
from strata.config import Settings
from tenants.schemas import ErrorBody, Health

ERROR_RESPONSES = {code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422)}


def create_app(engine: Engine, settings: Settings) -> FastAPI:
    app = FastAPI(title="Strata control API", version=version("strata"), responses=ERROR_RESPONSES)
    app.state.engine = engine
    app.state.settings = settings
    errors.install(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> Health:
        """Answers without a token: is the daemon up, and which version."""
        return Health(status="ok", version=app.version)

    for module in (tenant_routes, app_routes, credential_routes, event_routes):
        app.include_router(module.router)
    return app
