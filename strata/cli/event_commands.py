"""`strata events`: the audit log."""

import click

from strata.cli.context import api, json_option
from strata.cli.output import emit_json, table


@click.command("events")
@click.option("--tenant", help="Only this tenant's events.")
@click.option("--member", help="Only what this member of the tenant did (a tenant's own token names its tenant).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@json_option
def events(tenant: str | None, member: str | None, limit: int, as_json: bool) -> None:
    """Show the newest events of the audit log, newest first (as --json and the console): who did what, when."""
    with api() as client:
        rows = client.events(tenant, limit=limit, member=member)
    if as_json:
        return emit_json(rows)
    table(
        rows,
        [
            ("time", lambda e: e.time),
            ("actor", lambda e: e.actor),
            ("tenant", lambda e: e.tenant),
            ("action", lambda e: e.action),
            ("detail", lambda e: e.detail),
        ],
        empty="no events",
    )
