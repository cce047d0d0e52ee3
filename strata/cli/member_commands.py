"""`strata members ...`: the people of a tenant and their roles (owner, developer, viewer)."""

import click

from strata.cli.context import api, confirm_destructive, json_option, validated
from strata.cli.output import emit_json, table
from tenants.enums import MemberRole
from tenants.schemas import MemberCreate

ROLES = click.Choice([role.value for role in MemberRole])


@click.group("members")
def members_group() -> None:
    """People of a tenant, each with a role: owner (everything), developer (deploy, build, shell, data; no
    deletes, members or registries), viewer (read only). Their keys and tokens act with it."""


@members_group.command("add")
@click.argument("tenant")
@click.argument("name")
@click.option("--role", type=ROLES, required=True)
@json_option
def add(tenant: str, name: str, role: str, as_json: bool) -> None:
    """Add NAME to TENANT with a role; then `strata keys add --tenant T --member NAME FILE` and
    `strata tokens create --tenant T --member NAME` give them credentials."""
    body = validated(MemberCreate, name=name, role=role)
    with api() as client:
        member = client.add_member(tenant, body)
    if as_json:
        return emit_json(member)
    click.echo(f"added {member.name} to {tenant} as {member.role}")


@members_group.command("list")
@click.argument("tenant")
@json_option
def list_(tenant: str, as_json: bool) -> None:
    """List TENANT's members (its own keys and tokens, of no member, are its owner's)."""
    with api() as client:
        rows = client.members(tenant)
    if as_json:
        return emit_json(rows)
    table(
        rows,
        [("member", lambda m: m.name), ("role", lambda m: m.role), ("keys", lambda m: m.keys),
         ("tokens", lambda m: m.tokens), ("added", lambda m: m.created_at)],
        empty=f"no members; add one with `strata members add {tenant} NAME --role developer`",
    )  # fmt: skip


@members_group.command("set-role")
@click.argument("tenant")
@click.argument("name")
@click.argument("role", type=ROLES)
def set_role(tenant: str, name: str, role: str) -> None:
    """Give NAME another role: its keys and tokens act with it at once, and its SSH sessions end."""
    with api() as client:
        member = client.set_member_role(tenant, name, MemberRole(role))
    click.echo(f"{member.name} is a {member.role} of {tenant} now")


@members_group.command("remove")
@click.argument("tenant")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask.")
def remove(tenant: str, name: str, yes: bool) -> None:
    """Remove NAME from TENANT with its keys and tokens: refused at once, and its SSH sessions end."""
    confirm_destructive(f"Remove {name} from {tenant}, with their keys and tokens?", yes)
    with api() as client:
        client.remove_member(tenant, name)
    click.echo(f"removed {name} from {tenant}")
