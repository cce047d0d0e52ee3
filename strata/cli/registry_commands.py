"""`strata registries ...`: a tenant's logins to container registries, used for its pulls only."""

import sys

import click

from strata.cli.context import api, fail, json_option, validated
from strata.cli.output import emit_json, table
from tenants.schemas import RegistryLogin


@click.group("registries")
def registries_group() -> None:
    """Logins to container registries, per tenant: its images are pulled with them (and only its)."""


@registries_group.command("add")
@click.argument("tenant")
@click.argument("registry", metavar="REGISTRY")
@click.option("--username", "-u", required=True, help="The user name at the registry.")
@click.option("--password-stdin", is_flag=True, help="Read the password (or token) from standard input.")
@click.option("--password", "-p", hidden=True, help="Refused: a password on the command line is seen by all.")
def add(tenant: str, registry: str, username: str, password_stdin: bool, password: str | None) -> None:
    """Store TENANT's login to REGISTRY (HOST or HOST:PORT, as image references name it), replacing any; the
    password is read from stdin, kept encrypted, and never shown again."""
    if password is not None:
        fail(
            "a password on the command line is visible to every user of this machine and kept in shell history",
            hint=f'echo "$TOKEN" | strata registries add {tenant} {registry} -u {username} --password-stdin',
            code=2,
        )
    if not password_stdin:
        fail("give the password on standard input with --password-stdin", code=2)
    if sys.stdin.isatty():
        click.echo("password (then Enter): ", err=True, nl=False)
        secret = sys.stdin.readline()
    else:
        secret = sys.stdin.read()
    secret = secret.removesuffix("\n").removesuffix("\r")
    if not secret:
        fail("standard input held no password", code=2)
    login = validated(RegistryLogin, username=username, password=secret)
    with api() as client:
        added = client.add_registry(tenant, registry, login)
    click.echo(f"{tenant} logs in to {added.host} as {added.username}")


@registries_group.command("list")
@click.argument("tenant", required=False)
@json_option
def list_(tenant: str | None, as_json: bool) -> None:
    """List TENANT's registry logins (of every tenant you may see when left out); passwords are never shown."""
    with api() as client:
        names = [tenant] if tenant else [t.name for t in client.tenants()]
        rows = [login for name in names for login in client.registries(name)]
    if as_json:
        return emit_json(rows)
    table(
        rows,
        [("tenant", lambda r: r.tenant), ("registry", lambda r: r.host), ("username", lambda r: r.username),
         ("added", lambda r: r.created_at)],
        empty="no registry logins; add one with `strata registries add TENANT REGISTRY -u USER --password-stdin`",
    )  # fmt: skip


@registries_group.command("remove")
@click.argument("tenant")
@click.argument("registry", metavar="REGISTRY")
def remove(tenant: str, registry: str) -> None:
    """Forget TENANT's login to REGISTRY (images pulled with it stay the tenant's)."""
    with api() as client:
        client.remove_registry(tenant, registry)
    click.echo(f"removed {tenant}'s login to {registry}")
