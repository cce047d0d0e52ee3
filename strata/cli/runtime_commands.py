"""`strata images ...` and `strata nodes ...` (operators)."""

import time
from pathlib import Path

import click

from hosting.iaas import ImageBuildError, NodeImage, build_node_image, find_node_image
from hosting.iaas.flavors import FLAVORS
from strata.cli.context import api, confirm_destructive, fail, json_option, settings, validated
from strata.cli.output import emit_json, fields, table
from tenants.client import ApiError, StrataClient
from tenants.enums import NodeState
from tenants.schemas import NodeCreate, NodeRead, TenantImageRead


@click.group("images")
def images_group() -> None:
    """App images: the platform's (built here or loaded), tenants' own (pulled or built); the node VMs' image."""


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
@click.argument("tenant", required=False)
@json_option
def list_images(tenant: str | None, as_json: bool) -> None:
    """List the images TENANT owns (pulled with its logins or built); without TENANT, an operator sees every
    node's tagged images and their owners, a tenant its own."""
    with api() as client:
        if tenant is None and not _is_operator(client):
            tenant = client.tenants()[0].name
        if tenant is not None:
            return _tenant_images(client.tenant_images(tenant), as_json)
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
            ("owners", lambda row: row[0].owners or "platform"),
            ("created", lambda row: row[0].created),
        ],
        empty="no images; build the samples with `strata images bootstrap`",
    )


def _is_operator(client: StrataClient) -> bool:
    try:
        client.nodes()
    except ApiError as exc:
        if exc.status == 403:
            return False
        raise
    return True


def _tenant_images(rows: list[TenantImageRead], as_json: bool) -> None:
    if as_json:
        return emit_json(rows)
    table(
        rows,
        [
            ("tenant", lambda i: i.tenant),
            ("image", lambda i: i.reference),
            ("id", lambda i: i.image_id.removeprefix("sha256:")[:12]),
            ("source", lambda i: i.source),
            ("size", lambda i: f"{i.size_bytes / 1024**2:.1f}MiB"),
            ("since", lambda i: i.created_at),
        ],
        empty="no images of its own yet: deploy one from a registry (`strata registries add` first if it is private)",
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
    """The Docker engines app containers run on: this host's, VMs', and other machines' over SSH."""


@nodes_group.command("add")
@click.argument("name")
@click.option(
    "--driver",
    help="The hypervisor driver: qemu (the default), or libvirt (with STRATA_LIBVIRT_URI, or --uri).",
)
@click.option(
    "--uri",
    metavar="qemu+ssh://[USER@]HOST[:PORT]/system[?socket=PATH]",
    help="With --driver libvirt: a VM on another host's libvirtd, reached over SSH as a remote host is (authorize "
    "the key that `strata nodes ssh-key` prints there first).",
)
@click.option(
    "--flavor",
    type=click.Choice(list(FLAVORS)),
    help="A VM's size (default small): "
    + ", ".join(f"{f.name}: {f.vcpus} vCPU {f.memory_mib} MiB {f.disk_gib} GiB" for f in FLAVORS.values()),
)
@click.option(
    "--ssh",
    metavar="USER@HOST[:PORT]",
    help="Add another machine's Docker engine, reached over SSH, instead of a VM (authorize the key that "
    "`strata nodes ssh-key` prints there first).",
)
@click.option("--host-key", help="The host key it must show ('ssh-ed25519 AAAA...'); default: the one it shows now.")
@click.option("--docker-socket", help="Its engine's socket on that host (default /var/run/docker.sock).")
@click.option("--tenant", help="Dedicate the node to this tenant (a dedicated tenant's instances run only there).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the node is ready.")
@click.option("--timeout", default=900.0, show_default=True, help="Seconds to wait.")
@json_option
def add(
    name: str,
    driver: str | None,
    uri: str | None,
    flavor: str | None,
    ssh: str | None,
    host_key: str | None,
    docker_socket: str | None,
    tenant: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Add a node NAME: a VM booted (or restored from its flavor's snapshot) with a Docker engine (on another
    host's libvirtd with --uri), or with --ssh the Docker engine of another machine."""
    given = {
        "driver": driver, "uri": uri, "flavor": flavor, "ssh": ssh, "host_key": host_key, "docker_socket": docker_socket
    }  # fmt: skip
    spec = validated(NodeCreate, name=name, tenant=tenant, **{k: v for k, v in given.items() if v is not None})
    with api() as client:
        node = client.add_node(spec)
        deadline = time.monotonic() + timeout
        while wait and node.state == NodeState.PROVISIONING and time.monotonic() < deadline:
            time.sleep(0.25)
            node = client.node(name)
    if wait and node.state != NodeState.READY:
        fail(f"node {name} is {node.state}" + (f": {node.message}" if node.message else ""), code=1)
    _print_node(node, as_json)


@nodes_group.command("ssh-key")
def ssh_key() -> None:
    """Print the public key the platform logs in to remote hosts with: add it to ~USER/.ssh/authorized_keys on a
    host before `strata nodes add NAME --ssh USER@HOST`."""
    with api() as client:
        click.echo(client.host_ssh_key())


@nodes_group.command("show")
@click.argument("name")
@json_option
def show(name: str, as_json: bool) -> None:
    """Show one node: its state, capacity, claims, and what a VM node costs its host."""
    with api() as client:
        node = client.node(name)
    _print_node(node, as_json)


@nodes_group.command("drain")
@click.argument("name")
def drain(name: str) -> None:
    """Place nothing more on NAME, and move its instances elsewhere (a new one ready before an old goes)."""
    with api() as client:
        node = client.drain_node(name)
    click.echo(f"node {name} is draining; `strata nodes resume {name}` puts it back in service")
    if node.volumes:
        first = node.volumes[0].split(" ")[0]
        click.echo(
            f"its volumes stay on it, and the apps that mount them with them: {', '.join(node.volumes)}; move each "
            f"with its app: strata volumes move {first} --to NODE",
            err=True,
        )


@nodes_group.command("resume")
@click.argument("name")
def resume(name: str) -> None:
    """Put a drained node back in service; a VM node that failed is tried again."""
    with api() as client:
        node = client.resume_node(name)
    click.echo(f"node {name} is {'being provisioned again' if node.state == 'provisioning' else 'in service'}")


@nodes_group.command("remove")
@click.argument("name")
@click.option("--force", is_flag=True, help="Even with instances on it (they are then placed elsewhere).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def remove(name: str, force: bool, yes: bool) -> None:
    """Destroy the VM node NAME, or take the remote host NAME out with this platform's containers on it (drain it
    first, and its instances move without downtime)."""
    confirm_destructive(f"Remove node {name!r} (a VM is destroyed with its disk)?", yes)
    with api() as client:
        client.remove_node(name, force=force)
    click.echo(f"node {name} is being removed")


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
            ("state", lambda n: n.state + (" (draining)" if n.draining else "")),
            ("accel", lambda n: n.accel or "-"),
            ("tenant", lambda n: n.tenant or "-"),
            ("instances", lambda n: n.instances),
            ("cpu", lambda n: f"{n.allocated_cpu_millicores}m/{n.cpu_millicores}m"),
            ("memory", lambda n: f"{n.allocated_memory_mib}Mi/{n.memory_mib}Mi"),
        ],
        empty="no nodes; `strata up` registers the local Docker engine unless --no-local-node",
    )


def _print_node(node: NodeRead, as_json: bool) -> None:
    if as_json:
        return emit_json(node)
    rows = [
        ("name", node.name),
        ("driver", node.driver),
        ("state", node.state + (" (draining)" if node.draining else "")),
        *([("ssh", node.ssh), ("docker socket", node.docker_socket), ("host key", node.host_key)] if node.ssh else []),
        *([("uri", node.uri), ("host key", node.host_key)] if node.uri else []),
        ("flavor", node.flavor or "-"),
        ("accel", node.accel or "-"),
        ("tenant", node.tenant or "shared"),
        ("instances", node.instances),
        ("cpu", f"{node.allocated_cpu_millicores}m of {node.cpu_millicores}m"),
        ("memory", f"{node.allocated_memory_mib}Mi of {node.memory_mib}Mi"),
    ]
    if node.vm is not None:
        rows += [
            ("vm cpu time", f"{node.vm.cpu_seconds:.1f}s"),
            ("vm memory", f"{node.vm.memory_bytes / 1024**2:.0f}MiB resident"),
            ("vm disk", f"{node.vm.disk_bytes / 1024**2:.0f}MiB"),
        ]
    if node.message:
        rows.append(("message", node.message))
    fields(rows)
