"""`strata tenants ...` and `strata plans`."""

import click

from strata.cli.context import api, confirm_destructive, json_option, validated
from strata.cli.output import emit_json, fields, table
from tenants.enums import Isolation, TenantStatus
from tenants.schemas import TenantCreate, TenantRead


@click.group("tenants")
def tenants_group() -> None:
    """Create and manage tenants (operators)."""


@tenants_group.command("create")
@click.argument("name")
@click.option("--plan", default="small", show_default=True, help="Quota plan (see `strata plans`).")
@click.option(
    "--isolation",
    type=click.Choice([i.value for i in Isolation]),
    default="shared",
    show_default=True,
    help="dedicated: the tenant's containers run only on VMs of its own.",
)
@json_option
def create(name: str, plan: str, isolation: str, as_json: bool) -> None:
    """Create the tenant NAME (a DNS label: lowercase letters, digits, '-')."""
    spec = validated(TenantCreate, name=name, plan=plan, isolation=isolation)
    with api() as client:
        tenant = client.create_tenant(spec)
    _print(tenant, as_json)


@tenants_group.command("list")
@json_option
def list_(as_json: bool) -> None:
    """List tenants with their plan and what their apps use."""
    with api() as client:
        rows = client.tenants()
    if as_json:
        return emit_json(rows)
    table(
        rows,
        [
            ("name", lambda t: t.name),
            ("plan", lambda t: t.plan.name),
            ("isolation", lambda t: t.isolation),
            ("status", lambda t: t.status),
            ("apps", lambda t: f"{t.usage.apps}/{t.plan.max_apps}"),
            ("instances", lambda t: f"{t.usage.instances}/{t.plan.max_instances}"),
            ("cpu", lambda t: f"{t.usage.cpu_millicores}m/{t.plan.max_cpu_millicores}m"),
            ("memory", lambda t: f"{t.usage.memory_mib}Mi/{t.plan.max_memory_mib}Mi"),
        ],
        empty="no tenants yet; create one with `strata tenants create NAME`",
    )


@tenants_group.command("show")
@click.argument("name")
@json_option
def show(name: str, as_json: bool) -> None:
    """Show one tenant, its plan and its usage."""
    with api() as client:
        tenant = client.tenant(name)
    _print(tenant, as_json)


@tenants_group.command("suspend")
@click.argument("name")
def suspend(name: str) -> None:
    """Suspend a tenant: its apps stop serving and refuse changes until it is resumed."""
    with api() as client:
        client.set_tenant_status(name, TenantStatus.SUSPENDED)
    click.echo(f"tenant {name} suspended")


@tenants_group.command("resume")
@click.argument("name")
def resume(name: str) -> None:
    """Resume a suspended tenant."""
    with api() as client:
        client.set_tenant_status(name, TenantStatus.ACTIVE)
    click.echo(f"tenant {name} resumed")


@tenants_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(name: str, yes: bool) -> None:
    """Delete a tenant with all its apps, keys and tokens (the audit log keeps its events)."""
    confirm_destructive(f"Delete tenant {name!r} with all its apps, keys and tokens?", yes)
    with api() as client:
        client.delete_tenant(name)
    click.echo(f"tenant {name} deleted")


@click.command("plans")
@json_option
def plans(as_json: bool) -> None:
    """List the quota plans a tenant can be on."""
    with api() as client:
        rows = client.plans()
    if as_json:
        return emit_json(rows)
    table(
        rows,
        [
            ("name", lambda p: p.name),
            ("apps", lambda p: p.max_apps),
            ("instances", lambda p: p.max_instances),
            ("cpu", lambda p: f"{p.max_cpu_millicores}m"),
            ("memory", lambda p: f"{p.max_memory_mib}Mi"),
            ("req/s", lambda p: p.requests_per_second),
            ("burst", lambda p: p.burst),
            ("body", lambda p: f"{p.max_body_mib}Mi"),
        ],
    )


def _print(tenant: TenantRead, as_json: bool) -> None:
    if as_json:
        return emit_json(tenant)
    plan, usage = tenant.plan, tenant.usage
    fields(
        [
            ("name", tenant.name),
            ("plan", plan.name),
            ("isolation", tenant.isolation),
            ("status", tenant.status),
            ("created", tenant.created_at),
            ("apps", f"{usage.apps} of {plan.max_apps}"),
            ("instances", f"{usage.instances} of {plan.max_instances}"),
            ("cpu", f"{usage.cpu_millicores}m of {plan.max_cpu_millicores}m"),
            ("memory", f"{usage.memory_mib}Mi of {plan.max_memory_mib}Mi"),
        ]
    )
