"""`strata apps ...`: deploy, list, show, scale, restart, delete."""

import shlex
from pathlib import Path

import click

from strata.cli.build_commands import deploy_build
from strata.cli.context import api, confirm_destructive, fail, json_option, split_ref, validated
from strata.cli.output import emit_json, fields, table
from strata.cli.progress import follow
from strata.cli.units import Cpu, Duration, EnvVar, IdleTime, Memory
from tenants.client import ApiError, StrataClient
from tenants.schemas import AppRead, AppSpec

STATUS_WIDTH = 60  # of the reason in `apps list`


@click.group("apps")
def apps_group() -> None:
    """Deploy and manage a tenant's apps."""


@apps_group.command("deploy")
@click.argument("ref", metavar="TENANT/APP")
@click.option("--image", help="Image to run (required for a new app), e.g. strata/hello.")
@click.option("--port", type=int, help="Port the app listens on in its container [8080].")
@click.option("--replicas", type=int, help="Number of instances [1].")
@click.option("--cpu", type=Cpu(), help="CPU per instance: cores (0.5) or millicores (500m) [0.25].")
@click.option("--memory", type=Memory(), help="Memory per instance: 128M, 1G [128M].")
@click.option("--env", type=EnvVar(), multiple=True, help="Set an environment variable (repeatable).")
@click.option("--unset-env", multiple=True, metavar="KEY", help="Remove an environment variable (repeatable).")
@click.option("--health", help="HTTP path that answers 2xx when the app is healthy, e.g. /healthz.")
@click.option("--command", help="Command to run instead of the image's, as one shell-quoted string.")
@click.option("--hostname", multiple=True, help="Extra hostname routed to the app (repeatable; replaces the list).")
@click.option(
    "--https-redirect/--no-https-redirect",
    default=None,
    help="Answer the app's plain-HTTP requests with a 308 redirect to https [off].",
)
@click.option("--hsts/--no-hsts", default=None, help="Add Strict-Transport-Security to the app's HTTPS answers [off].")
@click.option(
    "--volume",
    multiple=True,
    metavar="VOLUME:PATH",
    help="Mount the tenant's VOLUME at PATH in the container (repeatable; replaces the list). "
    "An app with a volume runs one instance.",
)
@click.option("--no-volumes", is_flag=True, help="Mount no volume any more (their data stays in them).")
@click.option(
    "--idle-stop",
    type=IdleTime(),
    help="Sleep after this long without a request (15m, 2h; paused, later stopped; woken by the next request); "
    "0 never [the plan's].",
)
@click.option(
    "--build",
    "build_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Build the image from DIR (its Dockerfile; .dockerignore honoured) and deploy it.",
)
@click.option("--detach", is_flag=True, help="Return once the deploy is accepted; do not follow its rollout.")
@json_option
def deploy(
    ref: str,
    image: str | None,
    port: int | None,
    replicas: int | None,
    cpu: int | None,
    memory: int | None,
    env: tuple[tuple[str, str], ...],
    unset_env: tuple[str, ...],
    health: str | None,
    command: str | None,
    hostname: tuple[str, ...],
    https_redirect: bool | None,
    hsts: bool | None,
    volume: tuple[str, ...],
    no_volumes: bool,
    idle_stop: int | None,
    build_dir: Path | None,
    detach: bool,
    as_json: bool,
) -> None:
    """Create TENANT/APP, or change it: options not given keep their current value."""
    tenant, name = split_ref(ref)
    if build_dir is not None:
        https = https_redirect is not None or hsts is not None
        mounts = volume or no_volumes
        if (
            image
            or env
            or unset_env
            or hostname
            or command
            or health
            or port
            or replicas
            or cpu
            or memory
            or https
            or mounts
            or idle_stop is not None
        ):
            fail("--build deploys the built image alone; change other settings with a separate `apps deploy`")
        return deploy_build(tenant, name, build_dir, as_json)
    with api() as client:
        current = _existing(client, tenant, name)
        if current is None and image is None:
            fail(f"{ref} is a new app: give its image with --image")
        spec = current.model_dump(include=set(AppSpec.model_fields)) if current else {}
        given = {
            "image": image,
            "port": port,
            "replicas": replicas,
            "cpu_millicores": cpu,
            "memory_mib": memory,
            "health_path": health,
            "command": shlex.split(command) if command is not None else None,
            "https_redirect": https_redirect,
            "hsts": hsts,
            "idle_stop_seconds": idle_stop,
        }
        spec.update({key: value for key, value in given.items() if value is not None})
        spec["env"] = {
            key: value for key, value in {**spec.get("env", {}), **dict(env)}.items() if key not in unset_env
        }
        if hostname:
            spec["hostnames"] = list(hostname)
        if volume or no_volumes:
            spec["volumes"] = [_mount(item) for item in volume]
        app = client.deploy(tenant, name, validated(AppSpec, **spec))
    if as_json:
        return emit_json(app)
    verb = "created" if current is None else "unchanged" if current.revision == app.revision else "deployed"
    click.echo(f"{verb} {ref} revision {app.revision}, {app.replicas} replica(s) of {app.image}")
    if not detach and verb != "unchanged":
        with api() as client:
            follow(client, tenant, name, app.revision, current.problem if current else None)


def _mount(given: str) -> dict[str, str]:
    name, colon, path = given.partition(":")
    if not colon or not name or not path:
        fail(f"--volume {given!r}: give VOLUME:PATH, e.g. --volume data:/var/lib/web", code=2)
    return {"volume": name, "path": path}


@apps_group.command("list")
@click.argument("tenant", required=False)
@json_option
def list_(tenant: str | None, as_json: bool) -> None:
    """List the apps of TENANT (of every tenant you may see when left out)."""
    with api() as client:
        names = [tenant] if tenant else [t.name for t in client.tenants()]
        rows = [app for name in names for app in client.apps(name)]
    if as_json:
        return emit_json(rows)
    table(
        rows,
        [
            ("app", lambda a: f"{a.tenant}/{a.name}"),
            ("image", lambda a: a.image),
            ("revision", lambda a: a.revision),
            ("ready", lambda a: f"{a.ready()}/{a.replicas}"),
            ("cpu", lambda a: f"{a.cpu_millicores}m"),
            ("memory", lambda a: f"{a.memory_mib}Mi"),
            ("port", lambda a: a.port),
            ("status", lambda a: _short(_status(a)) or "ok"),
            ("wakes", lambda a: a.sleep.wakeups if a.sleep else None),
        ],
        empty="no apps yet; deploy one with `strata apps deploy TENANT/APP --image IMAGE`",
    )


@apps_group.command("show")
@click.argument("ref", metavar="TENANT/APP")
@json_option
def show(ref: str, as_json: bool) -> None:
    """Show an app's spec and revision."""
    with api() as client:
        app = client.app(*split_ref(ref))
    _print(app, as_json)


@apps_group.command("logs")
@click.argument("ref", metavar="TENANT/APP")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new lines until Ctrl-C.")
@click.option("--since", type=Duration(), help="Only lines of the last 5m, 2h, ...")
def logs(ref: str, follow: bool, since: int | None) -> None:
    """Show the output of every instance of the app, each line prefixed by its instance."""
    with api() as client:
        try:
            for line in client.logs(*split_ref(ref), follow=follow, since=since):
                click.echo(line)
        except KeyboardInterrupt:
            pass


@apps_group.command("scale")
@click.argument("ref", metavar="TENANT/APP")
@click.argument("replicas", type=click.IntRange(min=0))
def scale(ref: str, replicas: int) -> None:
    """Run REPLICAS instances of the app (0 stops it and keeps its spec)."""
    with api() as client:
        app = client.scale(*split_ref(ref), replicas)
    click.echo(f"scaled {ref} to {app.replicas} replica(s)")


@apps_group.command("restart")
@click.argument("ref", metavar="TENANT/APP")
def restart(ref: str) -> None:
    """Replace every instance, one at a time (a new revision with the same spec)."""
    with api() as client:
        app = client.restart(*split_ref(ref))
    click.echo(f"restarting {ref} as revision {app.revision}")


@apps_group.command("delete")
@click.argument("ref", metavar="TENANT/APP")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(ref: str, yes: bool) -> None:
    """Delete an app and stop its instances."""
    tenant, name = split_ref(ref)
    confirm_destructive(f"Delete app {ref} and stop all its instances?", yes)
    with api() as client:
        client.delete_app(tenant, name)
    click.echo(f"app {ref} deleted")


def _existing(client: StrataClient, tenant: str, name: str) -> AppRead | None:
    """The app as deployed now, or None if the tenant has no such app yet."""
    try:
        return client.app(tenant, name)
    except ApiError as exc:
        if exc.status == 404 and exc.field == "app":
            return None
        raise


def _print(app: AppRead, as_json: bool) -> None:
    if as_json:
        return emit_json(app)
    fields(
        [
            ("app", f"{app.tenant}/{app.name}"),
            ("status", app.reason() or f"ok: {app.ready()}/{app.replicas} ready"),
            ("image", app.image),
            ("commit", app.commit),
            ("command", shlex.join(app.command) if app.command else None),
            ("revision", app.revision),
            ("replicas", app.replicas),
            ("cpu", f"{app.cpu_millicores}m"),
            ("memory", f"{app.memory_mib}Mi"),
            ("port", app.port),
            ("health", app.health_path or "TCP connect"),
            ("env", app.env),
            ("hostnames", app.hostnames),
            ("https-redirect", "on" if app.https_redirect else "off"),
            ("hsts", "on" if app.hsts else "off"),
            ("idle-stop", _idle_stop(app)),
            ("sleep", _sleep(app)),
            ("updated", app.updated_at),
        ]
    )
    click.echo()
    table(
        app.instances,
        [
            ("instance", lambda i: i.id),
            ("node", lambda i: i.node),
            ("state", lambda i: i.state),
            ("revision", lambda i: i.revision),
            ("restarts", lambda i: i.restarts),
            ("cpu", lambda i: f"{i.cpu_millicores_used}m" if i.cpu_millicores_used is not None else None),
            ("memory", lambda i: f"{i.memory_mib_used}Mi" if i.memory_mib_used is not None else None),
            ("endpoint", lambda i: i.endpoint),
            ("started", lambda i: i.started_at),
            ("health", lambda i: i.last_health),
        ],
        empty="no instances running",
    )
    for instance in app.instances:
        if instance.message:
            click.echo(f"{instance.id}: {instance.message}")


def _status(app: AppRead) -> str | None:
    """Why the app does not run as asked; a sleeping app says so (woken by its next request)."""
    if app.sleep is not None and app.sleep.state != "awake":
        return f"asleep ({app.sleep.state})"
    return app.reason()


def _idle_stop(app: AppRead) -> str:
    if app.idle_stop_seconds is None:
        return "the plan's"
    return f"{app.idle_stop_seconds}s" if app.idle_stop_seconds else "off"


def _sleep(app: AppRead) -> str | None:
    if app.sleep is None:
        return None
    last = f", the last in {app.sleep.last_wake_ms:.0f} ms" if app.sleep.last_wake_ms is not None else ""
    return f"{app.sleep.state}; woken {app.sleep.wakeups} times{last}"


def _short(reason: str | None, width: int = STATUS_WIDTH) -> str | None:
    """A reason cut to a table cell, marked when cut (`apps show` has it whole)."""
    if reason is None or len(reason) <= width:
        return reason
    return reason[: width - 1] + "…"
