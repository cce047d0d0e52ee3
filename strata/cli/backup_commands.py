"""`strata backups ...`: verified backups of a tenant's volumes, and their restores."""

import click

from strata.cli.context import api, confirm_destructive, fail, json_option, split_ref
from strata.cli.output import emit_json, table
from tenants.client import StrataClient
from tenants.enums import BackupKind, BackupState
from tenants.schemas import BackupRead


@click.group("backups")
def backups_group() -> None:
    """Backups of volumes (taken with the app paused) and of services' databases (`pg_dump`s), each done only
    once restored and checked."""


@backups_group.command("create")
@click.argument("ref", metavar="TENANT/VOLUME")
@json_option
def create(ref: str, as_json: bool) -> None:
    """Back TENANT/VOLUME up now, its app paused for the copy, and verify it (restored into a scratch
    container, every file's checksum compared). A service's is a `pg_dump` of its database, taken as it runs
    and restored into a scratch server, every table's rows compared. Exits 1 if it failed."""
    tenant, volume = split_ref(ref, "VOLUME", "data")
    with api() as client:
        backup = client.create_backup(tenant, volume)
    if as_json:
        emit_json(backup)
    elif backup.state == BackupState.VERIFIED:
        held = f"{backup.files} table(s)" if backup.kind == BackupKind.PG_DUMP else f"{backup.files} file(s)"
        click.echo(f"backup {backup.id} of {ref}: {backup.kind}, verified, {held}, {_mib(backup.size_bytes)}")
    if backup.state != BackupState.VERIFIED:
        fail(f"backup {backup.id} of {ref} failed: {backup.message}")


@backups_group.command("list")
@click.argument("tenant", required=False)
@json_option
def list_(tenant: str | None, as_json: bool) -> None:
    """List the backups of TENANT (of every tenant you may see when left out), newest first."""
    with api() as client:
        rows = client.backups(tenant)
    if as_json:
        return emit_json(rows)
    table(
        rows,
        [("id", lambda b: b.id), ("volume", lambda b: f"{b.tenant}/{b.volume}"), ("kind", lambda b: b.kind),
         ("state", lambda b: b.state), ("files", lambda b: b.files), ("size", lambda b: _mib(b.size_bytes)),
         ("taken", lambda b: b.started_at),
         ("why", lambda b: b.message or "")],
        empty="no backups; take one with `strata backups create TENANT/VOLUME`",
    )  # fmt: skip


@backups_group.command("restore")
@click.argument("backup_id", metavar="ID", type=int)
@click.option("--to", "target", metavar="TENANT/VOLUME", help="Restore into this volume of the same tenant.")
@click.option("--yes", is_flag=True, help="Do not ask: the volume's current contents are replaced.")
def restore(backup_id: int, target: str | None, yes: bool) -> None:
    """Replace a volume's contents with backup ID (into the volume it was taken of, or --to another of the
    tenant's); the apps that mount it stop meanwhile and start again on it. A `pg_dump` restores into a
    service's database beside the live one, then replaces it: its apps run on, their sessions cut at the swap."""
    with api() as client:
        backup = _find(client, backup_id)
        volume = backup.volume
        if target is not None:
            tenant, volume = split_ref(target, "VOLUME", "data")
            if tenant != backup.tenant:
                fail(f"backup {backup_id} is {backup.tenant}'s: restore it into a volume of {backup.tenant}", code=2)
        confirm_destructive(f"Replace everything in {backup.tenant}/{volume} with backup {backup_id}?", yes)
        restored = client.restore_backup(backup.tenant, backup_id, volume)
    after = "its apps' sessions were cut" if backup.kind == BackupKind.PG_DUMP else "its apps start again on it"
    click.echo(f"restored backup {backup_id} into {restored.tenant}/{restored.name}; {after}")


@backups_group.command("delete")
@click.argument("backup_id", metavar="ID", type=int)
@click.option("--yes", is_flag=True, help="Do not ask.")
def delete(backup_id: int, yes: bool) -> None:
    """Delete backup ID and its archive."""
    with api() as client:
        backup = _find(client, backup_id)
        confirm_destructive(f"Delete backup {backup_id} of {backup.tenant}/{backup.volume}?", yes)
        client.delete_backup(backup.tenant, backup_id)
    click.echo(f"deleted backup {backup_id}")


def _find(client: StrataClient, backup_id: int) -> BackupRead:
    found = next((b for b in client.backups() if b.id == backup_id), None)
    if found is None:
        fail(f"no backup {backup_id} that you may see; `strata backups list` shows them")
    return found


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"
