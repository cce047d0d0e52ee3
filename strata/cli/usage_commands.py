"""`strata usage`: metered usage per tenant, app and kind of node, for people, scripts (--json) and
spreadsheets (--csv)."""

import csv
import sys
from datetime import datetime

import click

from strata.cli.context import api, json_option
from strata.cli.output import emit_json, table
from tenants.schemas import METERED


@click.command("usage")
@click.option("--tenant", help="Only this tenant's usage.")
@click.option(
    "--since", type=click.DateTime(["%Y-%m-%d"]), help="The first day counted (UTC) [default: the first of this month]."
)
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV: one line per tenant, app and kind of node.")
def usage(tenant: str | None, since: datetime | None, as_json: bool, as_csv: bool) -> None:
    """Show what each tenant's apps used: CPU-seconds, memory MiB-hours, storage GiB-hours, instance-hours, and
    requests and bytes through the front door (rolled up per hour, UTC)."""
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    with api() as client:
        report = client.usage(tenant, since.date() if since else None)
    if as_json:
        return emit_json(report)
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["tenant", "app", "node_kind", *METERED])
        writer.writerows(
            [line.tenant, line.app, line.node_kind, *(getattr(line, f) for f in METERED)] for line in report.lines
        )
        return None
    click.echo(f"since {report.since.isoformat(timespec='minutes')} (UTC)", err=True)
    table(report.lines, COLUMNS, empty="no usage metered in this period")
    return None


COLUMNS = [
    ("tenant", lambda u: u.tenant),
    ("app", lambda u: u.app or "(volumes)"),
    ("node", lambda u: u.node_kind),
    ("cpu-s", lambda u: f"{u.cpu_seconds:.1f}"),
    ("mem MiB-h", lambda u: f"{u.memory_mib_hours:.2f}"),
    ("disk GiB-h", lambda u: f"{u.storage_gib_hours:.2f}"),
    ("inst-h", lambda u: f"{u.instance_hours:.2f}"),
    ("requests", lambda u: u.requests),
    ("in", lambda u: u.bytes_in),
    ("out", lambda u: u.bytes_out),
]
