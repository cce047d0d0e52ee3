"""`strata catalog ...`: the ready apps of the catalog, deployed with the services they declare made and bound."""

import click

from strata.cli.context import api, json_option, validated
from strata.cli.output import emit_json, table
from strata.cli.units import EnvVar
from tenants.catalog import TemplateDeploy


@click.group("catalog")
def catalog_group() -> None:
    """Ready apps (tenants/catalog.toml), each with the services it needs (a database, say)."""


@catalog_group.command("list")
@json_option
def list_(as_json: bool) -> None:
    """List the templates, their image and the services a deploy makes."""
    with api() as client:
        rows = client.catalog()
    if as_json:
        return emit_json(rows)
    table(
        rows,
        [("template", lambda t: t.name), ("image", lambda t: t.image),
         ("services", lambda t: ", ".join(f"{s.name} ({s.kind})" for s in t.services) or "-"),
         ("env", lambda t: ", ".join(f.name + ("*" if f.required else "") for f in t.env) or "-"),
         ("what", lambda t: t.description)],
    )  # fmt: skip


@catalog_group.command("deploy")
@click.argument("tenant")
@click.argument("template")
@click.option("--app", "app", help="The app's name [default: the template's].")
@click.option("--env", "env", type=EnvVar(), multiple=True, help="A field of the template's form: KEY=VALUE.")
@click.option("--replicas", type=int, help="Instances [default: the template's].")
@json_option
def deploy(
    tenant: str, template: str, app: str | None, env: tuple[tuple[str, str], ...], replicas: int | None, as_json: bool
) -> None:
    """Deploy TEMPLATE in TENANT: the services it declares made (unless the tenant has them) and bound, as the
    console's form does. The first database builds the platform's PostgreSQL image (minutes)."""
    body = validated(TemplateDeploy, app=app or template, env=dict(env), replicas=replicas)
    with api() as client:
        done = client.deploy_template(tenant, template, body)
    if as_json:
        return emit_json(done)
    made = f"; made {', '.join(done.created)}" if done.created else ""
    bound = f", bound to {', '.join(s.name for s in done.services)}" if done.services else ""
    click.echo(f"deployed {tenant}/{done.app.name} from {template}{bound}{made}")
