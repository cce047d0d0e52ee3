"""`strata images ...` and `strata nodes ...` (operators)."""

import time
from pathlib import Path

import click

from hosting.iaas import ImageBuildError, NodeImage, build_node_image, find_node_image
from strata.cli.context import api, fail, json_option, settings
from strata.cli.output import emit_json, table


@click.group("images")
def images_group() -> None:
    """App images on the nodes (built here or loaded from archives, no registry) and the node VMs' guest image."""


@images_group.command("bootstrap")
def bootstrap() -> None:
    """Build the sample images strata/hello and strata/static on every node, offline, from busybox-static."""
    with api() as client:
        tags = client.bootstrap_images()
    click.echo("built " + ", ".join(tags))


@images_group.command("load")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def load(archive: Path) -> None:
    """Load a `docker save` ARCHIVE onto every node."""
    with api() as client:
        tags = client.load_images(archive)
    click.echo("loaded " + (", ".join(tags) or "an archive with no tagged image"))


@images_group.command("list")
@json_option
def list_images(as_json: bool) -> None:
    """List the tagged images of every node."""
    with api() as client:
        rows = [image for image in client.images() if image.tags]
    if as_json:
        return emit_json(rows)
    table(
        [(image, tag) for image in rows for tag in image.tags],
        [
            ("node", lambda row: row[0].node),
            ("image", lambda row: row[1]),
            ("id", lambda row: row[0].id.removeprefix("sha256:")[:12]),
            ("size", lambda row: f"{row[0].size_bytes / 1024**2:.1f}MiB"),
            ("created", lambda row: row[0].created),
        ],
        empty="no images; build the samples with `strata images bootstrap`",
    )


@images_group.command("node-build")
@click.option("--force", is_flag=True, help="Rebuild it even if the image of the current recipe is built.")
def node_build(force: bool) -> None:
    """Build the node VM guest image (kernel, initramfs, root disk) into $STRATA_IMAGES_DIR, here, as root."""
    images_dir = settings().images_dir
    if not force and (image := find_node_image(images_dir)):
        click.echo(f"already built: {_describe(image)}")
        return
    started = time.monotonic()
    try:
        image = build_node_image(
            images_dir, force=force, log=lambda step: click.echo(f"[{time.monotonic() - started:5.1f}s] {step}")
        )
    except ImageBuildError as exc:
        fail(str(exc), hint="it needs root, apt and debootstrap (`make install`); the log says where it stopped")
    click.echo(f"built in {time.monotonic() - started:.0f}s: {_describe(image)}")


def _describe(image: NodeImage) -> str:
    return f"{image.directory} ({image.allocated_bytes() / 1024**2:.0f}MiB on disk)"


@click.group("nodes")
def nodes_group() -> None:
    """The Docker engines app containers run on."""


@nodes_group.command("list")
@json_option
def list_nodes(as_json: bool) -> None:
    """List nodes with their capacity and what their instances claim."""
    with api() as client:
        rows = client.nodes()
    if as_json:
        return emit_json(rows)
    table(
        rows,
        [
            ("name", lambda n: n.name),
            ("driver", lambda n: n.driver),
            ("state", lambda n: n.state),
            ("instances", lambda n: n.instances),
            ("cpu", lambda n: f"{n.allocated_cpu_millicores}m/{n.cpu_millicores}m"),
            ("memory", lambda n: f"{n.allocated_memory_mib}Mi/{n.memory_mib}Mi"),
        ],
        empty="no nodes; `strata up` registers the local Docker engine unless --no-local-node",
    )
