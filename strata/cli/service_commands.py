"""`strata services ...`: managed PostgreSQL for a tenant's apps (the add-on model)."""

import click

from strata.cli.context import api, confirm_destructive, fail, json_option, split_ref, validated
from strata.cli.output import emit_json, fields, table
from strata.cli.units import Memory
from tenants.enums import AppKind
from tenants.schemas import ServiceCreate, ServiceRead


@click.group("services")
def services_group() -> None:
    """Managed services (PostgreSQL 15): data for apps, bound to them as DATABASE_URL."""


@services_group.command("create")
@click.argument("ref", metavar="TENANT/SERVICE")
@click.option("--kind", type=click.Choice([AppKind.POSTGRES]), default=AppKind.POSTGRES, show_default=True)
@click.option("--size", type=Memory(), default="1G", show_default=True, help="Its volume's hard size.")
@json_option
def create(ref: str, kind: str, size: int, as_json: bool) -> None:
    """Create TENANT/SERVICE: PostgreSQL on a volume of its own, with a generated password. The first one
    builds the platform's PostgreSQL image (minutes). Bind it with `strata services bind TENANT/SERVICE TENANT/APP`."""
    tenant, name = split_ref(ref, "SERVICE", "db")
    body = validated(ServiceCreate, name=name, kind=kind, size_mib=size)
    with api() as client:
        service = client.create_service(tenant, body)
    if as_json:
        return emit_json(service)
    click.echo(
        f"created {ref}: {service.kind} on a {service.size_mib} MiB volume, reached as {service.host}:{service.port}"
    )


@services_group.command("list")
@click.argument("tenant", required=False)
@json_option
def list_(tenant: str | None, as_json: bool) -> None:
    """List the services of TENANT (of every tenant you may see when left out)."""
    with api() as client:
        rows = client.services(tenant)
    if as_json:
        return emit_json(rows)
    table(
        rows,
        [("service", lambda s: f"{s.tenant}/{s.name}"), ("kind", lambda s: s.kind), ("ready", _ready),
         ("size", lambda s: f"{s.size_mib} MiB"), ("bound to", lambda s: ", ".join(s.bound_to) or "-")],
        empty="no services; create one with `strata services create TENANT/SERVICE --kind postgres`",
    )  # fmt: skip


@services_group.command("show")
@click.argument("ref", metavar="TENANT/SERVICE")
@json_option
def show(ref: str, as_json: bool) -> None:
    """Show TENANT/SERVICE: where its tenant's containers reach it, its database, its volume and bindings.
    Its password is never shown: bound apps get it in DATABASE_URL."""
    tenant, name = split_ref(ref, "SERVICE", "db")
    with api() as client:
        service = client.service(tenant, name)
    if as_json:
        return emit_json(service)
    used = f"{service.used_mib:.1f} of " if service.used_mib is not None else ""
    fields(
        [("service", f"{service.tenant}/{service.name}"), ("kind", service.kind), ("ready", _ready(service)),
         ("reached at", f"{service.host}:{service.port} (on {service.tenant}'s network)"),
         ("database", service.database), ("user", service.username), ("volume", f"{used}{service.size_mib} MiB"),
         ("bound to", ", ".join(service.bound_to) or "-"), ("created", service.created_at)]
    )  # fmt: skip


@services_group.command("bind")
@click.argument("ref", metavar="TENANT/SERVICE")
@click.argument("app_ref", metavar="TENANT/APP")
def bind(ref: str, app_ref: str) -> None:
    """Give TENANT/APP the service's DATABASE_URL (a new revision of the app, rolled out as a deploy is)."""
    tenant, name, app = _pair(ref, app_ref)
    with api() as client:
        client.bind_service(tenant, name, app)
    click.echo(f"bound {ref} to {app_ref}: its new revision gets DATABASE_URL")


@services_group.command("unbind")
@click.argument("ref", metavar="TENANT/SERVICE")
@click.argument("app_ref", metavar="TENANT/APP")
def unbind(ref: str, app_ref: str) -> None:
    """Take the service's DATABASE_URL from TENANT/APP (a new revision)."""
    tenant, name, app = _pair(ref, app_ref)
    with api() as client:
        client.unbind_service(tenant, name, app)
    click.echo(f"unbound {ref} from {app_ref}")


@services_group.group("credentials")
def credentials() -> None:
    """The credentials bound apps get in DATABASE_URL."""


@credentials.command("rotate")
@click.argument("ref", metavar="TENANT/SERVICE")
@json_option
def rotate(ref: str, as_json: bool) -> None:
    """Give the apps bound to TENANT/SERVICE a new login and password, rolled out as a deploy (no request fails);
    the old login is retired once none of their old instances is left. Run it again to finish a rotation whose
    apps took too long (exit 3 while the old login stays valid)."""
    tenant, name = split_ref(ref, "SERVICE", "db")
    with api() as client:
        rotation = client.rotate_service_credentials(tenant, name)
    if as_json:
        emit_json(rotation)
    elif rotation.retiring is None and rotation.resumed:
        click.echo(f"finished the rotation of {ref} begun before: its apps use login {rotation.login}, the old "
                   "login is retired; no new password was made (run this again for one)")  # fmt: skip
    elif rotation.retiring is None:
        click.echo(f"rotated {ref}: its apps use login {rotation.login}; the old login is retired")
    if rotation.retiring is not None:
        fail(
            f"{ref}: its apps get login {rotation.login}, but {', '.join(rotation.waiting_for)} still run old "
            f"instances, so login {rotation.retiring} stays valid",
            hint=f"run `strata services credentials rotate {ref}` again to retire it once they have rolled",
            code=3,
        )


@services_group.command("delete")
@click.argument("ref", metavar="TENANT/SERVICE")
@click.option("--force", is_flag=True, help="Even while bound (the apps lose their DATABASE_URL).")
@click.option("--yes", is_flag=True, help="Do not ask: the service's data is deleted.")
def delete(ref: str, force: bool, yes: bool) -> None:
    """Delete TENANT/SERVICE with its data; refused while bound, unless --force."""
    tenant, name = split_ref(ref, "SERVICE", "db")
    confirm_destructive(f"Delete service {ref} and all its data?", yes)
    with api() as client:
        client.delete_service(tenant, name, force=force)
    click.echo(f"deleted {ref}")


def _pair(ref: str, app_ref: str) -> tuple[str, str, str]:
    tenant, name = split_ref(ref, "SERVICE", "db")
    app_tenant, app = split_ref(app_ref)
    if app_tenant != tenant:
        fail(f"a service is bound to apps of its own tenant: {ref} and {app_ref} are of two tenants", code=2)
    return tenant, name, app


def _ready(service: ServiceRead) -> str:
    return "yes" if service.ready else f"no: {service.status}" if service.status else "no"
