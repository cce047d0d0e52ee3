"""`strata apps deploy TENANT/APP --build DIR` and `strata builds ...`: builds from source through the API."""

import tempfile
from pathlib import Path

import click

from strata.cli.context import api, fail, json_option, settings
from strata.cli.output import emit_json, table
from tenants.build_context import BadPattern, write_context
from tenants.enums import BuildState
from tenants.schemas import BuildRead

SPOOL_BYTES = 8 * 1024**2  # a context up to this size is made in memory, a larger one in a temporary file
UPLOAD_CHUNK_BYTES = 256 * 1024


def deploy_build(tenant: str, app: str, directory: Path, as_json: bool) -> None:
    """Tar DIR (honouring its .dockerignore), build it on the platform with its log streamed, and say what was
    deployed; exit 1 when the build failed."""
    if not (directory / "Dockerfile").is_file():
        fail(
            f"{directory} has no Dockerfile; add one, e.g. for a static site:\n    FROM strata/static\n    COPY . /www",
            code=2,
        )
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as context:
        try:
            write_context(directory, context)
        except BadPattern as exc:
            fail(f"{directory / '.dockerignore'}: {exc}", code=2)
        size = context.tell()
        context.seek(0)
        if not as_json:
            click.echo(f"building {tenant}/{app} from {directory} ({size / 1024:.1f} KiB of context)", err=True)
        result: BuildRead | None = None
        with api() as client:
            for item in client.build(tenant, app, iter(lambda: context.read(UPLOAD_CHUNK_BYTES), b"")):
                if isinstance(item, BuildRead):
                    result = item
                elif not as_json:
                    click.echo(item)
    if result is None:  # the client raises rather than end without a build; kept for the type checker
        fail("the build ended without a result; see `strata builds list`")
    if as_json:
        emit_json(result)
    elif result.state == BuildState.SUCCEEDED:
        host = f"{app}.{tenant}.{settings().domain}"
        if result.unchanged:
            click.echo(f"{result.message}: {tenant}/{app} revision {result.revision} (build {result.id})")
        else:
            click.echo(f"deployed {tenant}/{app} revision {result.revision} of {result.image} (build {result.id})")
        click.echo(f"reach it at http://{host} through the gateway")
    if result.state != BuildState.SUCCEEDED:
        fail(
            f"build {result.id} of {tenant}/{app} failed: {result.message}",
            hint=f"the running revision is unchanged; the whole log: strata builds log {tenant} {result.id}",
        )


@click.group("builds")
def builds_group() -> None:
    """Builds of apps from source (`apps deploy --build DIR`, `git push`)."""


@builds_group.command("list")
@click.argument("tenant", required=False)
@click.option("--app", help="Only this app's builds.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@json_option
def list_(tenant: str | None, app: str | None, limit: int, as_json: bool) -> None:
    """List builds, newest first: TENANT's, or every tenant's you may see."""
    with api() as client:
        rows = client.builds(tenant, app, limit)
    if as_json:
        return emit_json(rows)
    table(
        rows,
        [
            ("id", lambda b: b.id),
            ("app", lambda b: f"{b.tenant}/{b.app}"),
            ("state", lambda b: b.state),
            ("revision", lambda b: b.revision),
            ("commit", lambda b: b.commit[:12] if b.commit else None),
            ("source", lambda b: b.source),
            ("actor", lambda b: b.actor),
            ("started", lambda b: b.started_at),
            ("message", lambda b: (b.message or "").splitlines()[0][:60] if b.message else None),
        ],
        empty="no builds yet; build one with `strata apps deploy TENANT/APP --build DIR`",
    )


@builds_group.command("log")
@click.argument("tenant")
@click.argument("build_id", metavar="ID", type=click.IntRange(min=1))
def log(tenant: str, build_id: int) -> None:
    """Show a build's whole output (so far, while it runs) and how it ended."""
    with api() as client:
        click.echo(client.build_log(tenant, build_id), nl=False)
