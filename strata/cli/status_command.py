"""`strata status`: which daemon leads the platform, since when, and the daemons standing by."""

from datetime import UTC, datetime

import click

from strata.cli.context import api, json_option
from strata.cli.output import emit_json, table
from tenants.schemas import DaemonRead


@click.command("status")
@json_option
def status(as_json: bool) -> None:
    """Show which daemon leads (it reconciles, places and drives the VMs) and which stand by (operators)."""
    with api() as client:
        found = client.status()
    if as_json:
        return emit_json(found)
    leader = found.leader
    if leader is None:
        click.echo(f"no daemon leads now (database: {found.database}); one that stands by leads within seconds")
    else:
        click.echo(f"leader: {leader.name} (pid {leader.pid}) since {_local(leader.leading_since)}")
    click.echo(f"database: {found.database}; answered by {found.answered_by}")
    table(
        found.daemons,
        [
            ("daemon", lambda d: d.name),
            ("pid", lambda d: d.pid),
            ("role", lambda d: _role(d, leader)),
            ("started", lambda d: _local(d.started_at)),
            ("seen", lambda d: f"{(datetime.now(UTC) - d.seen_at).total_seconds():.0f} s ago"),
        ],
        empty="no daemon on record",
    )


def _role(daemon: DaemonRead, leader: DaemonRead | None) -> str:
    if not daemon.alive:
        return "gone"
    return "leader" if leader is not None and daemon.name == leader.name else "standby"


def _local(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "-"
