"""`strata volumes ...`: a tenant's persistent volumes, each with a hard size, on one node."""

import time

import click

from strata.cli.context import api, confirm_destructive, json_option, split_ref, validated
from strata.cli.output import emit_json, fields, table
from strata.cli.units import Memory
from tenants.schemas import VolumeCreate, VolumeRead


@click.group("volumes")
def volumes_group() -> None:
    """Persistent volumes: data that outlives deploys and restarts, with a hard size limit."""


@volumes_group.command("create")
@click.argument("ref", metavar="TENANT/VOLUME")
@click.option("--size", type=Memory(), required=True, help="Its hard limit: 512M, 1G, 20G.")
@click.option("--node", help="The node it lives on (operators): the host by default, a dedicated tenant's own VM.")
@json_option
def create(ref: str, size: int, node: str | None, as_json: bool) -> None:
    """Create TENANT/VOLUME of --size: writes past it fail with "No space left on device" in the container.
    Mount it with `strata apps deploy TENANT/APP --volume VOLUME:PATH`; the app runs on the volume's node."""
    tenant, name = split_ref(ref, "VOLUME", "data")
    body = validated(VolumeCreate, name=name, size_mib=size, node=node)
    with api() as client:
        volume = client.create_volume(tenant, body)
    if as_json:
        return emit_json(volume)
    click.echo(f"created {ref}, {_size(volume.size_mib)} on node {volume.node}")


@volumes_group.command("list")
@click.argument("tenant", required=False)
@json_option
def list_(tenant: str | None, as_json: bool) -> None:
    """List the volumes of TENANT (of every tenant you may see when left out)."""
    with api() as client:
        rows = client.volumes(tenant)
    if as_json:
        return emit_json(rows)
    table(
        rows,
        [("volume", lambda v: f"{v.tenant}/{v.name}"), ("size", lambda v: _size(v.size_mib)), ("used", _used),
         ("node", lambda v: v.node), ("mounted by", lambda v: ", ".join(v.mounted_by) or "-")],
        empty="no volumes; create one with `strata volumes create TENANT/VOLUME --size 1G`",
    )  # fmt: skip


@volumes_group.command("show")
@click.argument("ref", metavar="TENANT/VOLUME")
@json_option
def show(ref: str, as_json: bool) -> None:
    """Show TENANT/VOLUME: its size, how much is used, its node and the app that mounts it."""
    tenant, name = split_ref(ref, "VOLUME", "data")
    with api() as client:
        volume = client.volume(tenant, name)
    if as_json:
        return emit_json(volume)
    node = volume.node + (f" (moving to {volume.moving_to})" if volume.moving_to else "")
    fields(
        [("volume", f"{volume.tenant}/{volume.name}"), ("size", _size(volume.size_mib)), ("used", _used(volume)),
         ("node", node), ("mounted by", ", ".join(volume.mounted_by) or "-"), ("created", volume.created_at)]
    )  # fmt: skip


@volumes_group.command("move")
@click.argument("ref", metavar="TENANT/VOLUME")
@click.option("--to", "node", required=True, help="The node it goes to (`strata nodes list`).")
@json_option
def move(ref: str, node: str, as_json: bool) -> None:
    """Move TENANT/VOLUME to another node with the app that mounts it: the app's instance stops, the volume goes
    (on a VM node: a disk of the VM), and the app starts there."""
    tenant, name = split_ref(ref, "VOLUME", "data")
    started = time.monotonic()
    with api() as client:
        before = client.volume(tenant, name).node
        volume = client.move_volume(tenant, name, node)
    if as_json:
        return emit_json(volume)
    if before == volume.node:
        click.echo(f"{ref} is on node {volume.node} already")
        return
    apps = f"; {', '.join(volume.mounted_by)} starts there" if volume.mounted_by else ""
    click.echo(f"moved {ref} from node {before} to {volume.node} in {time.monotonic() - started:.1f} s{apps}")


@volumes_group.command("delete")
@click.argument("ref", metavar="TENANT/VOLUME")
@click.option("--force", is_flag=True, help="Delete it even though an app mounts it (the app loses it).")
@click.option("--yes", is_flag=True, help="Do not ask: the volume's data is deleted.")
def delete(ref: str, force: bool, yes: bool) -> None:
    """Delete TENANT/VOLUME and its data; refused while an app mounts it, unless --force."""
    tenant, name = split_ref(ref, "VOLUME", "data")
    confirm_destructive(f"Delete volume {ref} and all the data in it?", yes)
    with api() as client:
        client.delete_volume(tenant, name, force=force)
    click.echo(f"deleted {ref}")


def _size(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def _used(volume: VolumeRead) -> str:
    if volume.used_mib is None:
        return "?"
    return f"{_size(volume.used_mib)} ({volume.used_mib / volume.size_mib:.0%})"
