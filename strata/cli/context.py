"""What every CLI command needs: the settings, a client with the right token, and how a failure ends."""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import click
from pydantic import BaseModel, ValidationError

from strata.config import Settings
from tenants.client import ApiError, StrataClient

Model = TypeVar("Model", bound=BaseModel)

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def settings() -> Settings:
    return Settings.from_env()


def token_for(config: Settings, explicit: str | None) -> str | None:
    """`--token` (or `STRATA_TOKEN`, which click reads into it), else this home's operator token."""
    if explicit:
        return explicit
    try:
        return config.operator_token_file.read_text().strip()
    except OSError:
        return None


@contextmanager
def api() -> Iterator[StrataClient]:
    """A client of the daemon (its unix socket, or `STRATA_API` as a URL); API refusals end the command."""
    ctx = click.get_current_context()
    config = settings()
    token = token_for(config, ctx.find_root().params.get("token"))
    url = os.environ.get("STRATA_API")
    client = StrataClient(url=url, token=token) if url else StrataClient(socket=config.api_socket, token=token)
    try:
        with client:
            yield client
    except ApiError as exc:
        fail(exc.message, hint=_hint(exc))


def fail(message: str, *, hint: str | None = None, code: int = 1) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    sys.exit(code)


def _hint(exc: ApiError) -> str | None:
    if exc.status == 401:
        return "pass --token or set STRATA_TOKEN; operators find theirs in $STRATA_HOME/operator.token"
    return None


def split_ref(ref: str, what: str = "APP", example: str = "web") -> tuple[str, str]:
    """`TENANT/APP` as the app verbs take it (`TENANT/VOLUME` as the volume verbs do)."""
    tenant, sep, name = ref.partition("/")
    if not sep or not tenant or not name:
        hint = f"TENANT/{what}"
        raise click.BadParameter(f"{ref!r} should be {hint}, like acme/{example}", param_hint=hint)
    return tenant, name


def validated(model: type[Model], **values: Any) -> Model:
    """Build an API input model here, so bad input is refused before anything is sent."""
    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        cause = first.get("ctx", {}).get("error")
        fail(f"{field}: {cause if isinstance(cause, Exception) else first['msg']}", code=2)


def confirm_destructive(question: str, yes: bool) -> None:
    """Ask on a terminal; without one, insist on --yes rather than guess."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail("this deletes data and needs confirmation: run it on a terminal, or pass --yes", code=2)
    if not click.confirm(question, default=False):
        fail("cancelled; nothing was changed")
