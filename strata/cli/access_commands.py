"""`strata keys ...` (SSH public keys) and `strata tokens ...` (API tokens)."""

from pathlib import Path

import click

from strata.cli.context import api, fail, json_option, validated
from strata.cli.output import emit_json, table
from strata.cli.units import Duration
from tenants.enums import Role
from tenants.schemas import KeyCreate, TokenCreate


def _role(operator: bool, tenant: str | None) -> Role:
    if operator == (tenant is not None):
        fail("say whose credential this is: either --operator or --tenant NAME", code=2)
    return Role.OPERATOR if operator else Role.TENANT


@click.group("keys")
def keys_group() -> None:
    """SSH public keys that may log in to the platform's SSH server."""


@keys_group.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--operator", is_flag=True, help="The key logs in as an operator.")
@click.option("--tenant", help="The key logs in as this tenant.")
@click.option("--member", help="A member of the tenant: the key acts with the member's role (else the owner's).")
@json_option
def add_key(file: Path, operator: bool, tenant: str | None, member: str | None, as_json: bool) -> None:
    """Register the public key in FILE (an OpenSSH .pub file)."""
    role = _role(operator, tenant)
    text = file.read_text(errors="replace")
    spec = validated(KeyCreate, public_key=text, role=role, tenant=tenant, member=member)
    with api() as client:
        key = client.add_key(spec)
    if as_json:
        return emit_json(key)
    whose = f"{member} of {tenant}" if member else tenant or "operators"
    click.echo(f"added key {key.id} ({key.fingerprint}) for {whose}")


@keys_group.command("list")
@click.option("--tenant", help="Only this tenant's keys.")
@json_option
def list_keys(tenant: str | None, as_json: bool) -> None:
    """List registered keys."""
    with api() as client:
        rows = client.keys(tenant)
    if as_json:
        return emit_json(rows)
    table(
        rows,
        [
            ("id", lambda k: k.id),
            ("fingerprint", lambda k: k.fingerprint),
            ("role", lambda k: k.role),
            ("tenant", lambda k: k.tenant),
            ("member", lambda k: k.member or ("owner" if k.tenant else "")),
            ("comment", lambda k: k.comment),
            ("added", lambda k: k.created_at),
        ],
        empty="no keys yet; add one with `strata keys add --tenant T FILE.pub`",
    )


@keys_group.command("remove")
@click.argument("key_id", type=int, metavar="ID")
def remove_key(key_id: int) -> None:
    """Remove the key with this ID (see `strata keys list`)."""
    with api() as client:
        client.remove_key(key_id)
    click.echo(f"key {key_id} removed")


@click.group("tokens")
def tokens_group() -> None:
    """API tokens for scripts, the CLI and the console."""


@tokens_group.command("create")
@click.option("--operator", is_flag=True, help="A token with full operator rights.")
@click.option("--tenant", help="A token that sees and changes only this tenant.")
@click.option("--member", help="A member of the tenant: the token acts with the member's role (else the owner's).")
@click.option("--name", default="api", show_default=True, help="What the token is for (shown in the audit log).")
@click.option("--ttl", type=Duration(), help="Expire after this long: 30d, 12h, 90m.")
def create_token(operator: bool, tenant: str | None, member: str | None, name: str, ttl: int | None) -> None:
    """Create a token and print it alone on stdout (it is shown only this once)."""
    role = _role(operator, tenant)
    spec = validated(TokenCreate, role=role, tenant=tenant, member=member, name=name, ttl_seconds=ttl)
    with api() as client:
        created = client.create_token(spec)
    click.echo(created.token)


@tokens_group.command("list")
@click.option("--tenant", help="Only this tenant's tokens.")
@json_option
def list_tokens(tenant: str | None, as_json: bool) -> None:
    """List tokens (never their secrets)."""
    with api() as client:
        rows = client.tokens(tenant)
    if as_json:
        return emit_json(rows)
    table(
        rows,
        [
            ("id", lambda t: t.id),
            ("name", lambda t: t.name),
            ("role", lambda t: t.role),
            ("tenant", lambda t: t.tenant),
            ("member", lambda t: t.member or ("owner" if t.tenant else "")),
            ("created", lambda t: t.created_at),
            ("expires", lambda t: t.expires_at or "never"),
        ],
    )


@tokens_group.command("revoke")
@click.argument("token_id", type=int, metavar="ID")
def revoke_token(token_id: int) -> None:
    """Revoke the token with this ID: it stops working at once."""
    with api() as client:
        client.revoke_token(token_id)
    click.echo(f"token {token_id} revoked")
