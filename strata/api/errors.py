"""One error shape for every refusal: `{"error": {"code", "message", "field"}}`, never a bare 500."""

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from tenants.errors import Busy, Conflict, DomainError, Forbidden, Invalid, NotFound, QuotaExceeded, Unavailable

log = logging.getLogger(__name__)

STATUS = {
    Invalid: 422,
    NotFound: 404,
    Conflict: 409,
    QuotaExceeded: 403,
    Forbidden: 403,
    Busy: 429,
    Unavailable: 503,
}
RETRY_AFTER_SECONDS = 1
CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "field": field}}
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into the error shape."""

    @app.exception_handler(DomainError)
    async def domain(_: Request, exc: DomainError) -> JSONResponse:
        return error_response(STATUS.get(type(exc), 400), exc.code, exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        location = [str(part) for part in first["loc"] if part not in ("body", "path", "query")]
        field = ".".join(location) or None
        cause = first.get("ctx", {}).get("error")
        message = str(cause) if isinstance(cause, Exception) else first["msg"]
        if isinstance(cause, Invalid) and cause.field and not field:
            field = cause.field
        return error_response(422, "invalid", f"{field}: {message}" if field else message, field)

    @app.exception_handler(HTTPException)
    async def http(request: Request, exc: HTTPException) -> JSONResponse:
        code = CODES.get(exc.status_code, "error")
        headers = exc.headers
        if exc.status_code == 405:  # every method of the path, not only those of the route Starlette tried
            headers = {"Allow": ", ".join(_allowed(request))}
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(OperationalError)
    async def database(_: Request, exc: OperationalError) -> JSONResponse:
        log.warning("the database refused: %s", exc.orig)
        return error_response(
            503,
            "unavailable",
            "the database is busy or unavailable now (locked, its disk full, or its server unreachable); nothing was "
            "changed: try again",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in the control API")
        return error_response(500, "internal", "internal error; the daemon's log has the details")


def _allowed(request: Request) -> list[str]:
    path = request.url.path
    methods = {
        method
        for route in request.app.routes
        if isinstance(route, APIRoute) and route.path_regex.fullmatch(path)
        for method in route.methods or ()
    }
    return sorted(methods)
