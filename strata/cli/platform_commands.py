"""`strata up` (the daemon) and `strata doctor` (what the machine has)."""

import json
import logging
from dataclasses import asdict

import click

from strata.cli.context import api, fail, json_option, settings


def _address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65_535:
        raise click.BadParameter(f"{value!r} should be HOST:PORT, like 127.0.0.1:7070")
    return host, int(port)


@click.command("up")
@click.option(
    "--api",
    "api_address",
    metavar="HOST:PORT",
    help="Also serve the control API over TCP here (it is always on $STRATA_HOME/api.sock).",
)
@click.option(
    "--gateway",
    "gateway_address",
    metavar="HOST:PORT",
    default="127.0.0.1:8080",
    show_default=True,
    help="Where the front door serves the apps over HTTP (http://APP.TENANT.DOMAIN).",
)
@click.option(
    "--https",
    "https_address",
    metavar="HOST:PORT",
    default="127.0.0.1:8443",
    show_default=True,
    help="Where the front door serves the apps over HTTPS (`none` turns it off).",
)
@click.option(
    "--gateway-admin",
    metavar="HOST:PORT",
    default="127.0.0.1:9180",
    show_default=True,
    help="The front door's admin listener (GET /metrics: HAProxy's Prometheus exporter).",
)
@click.option(
    "--gateway-workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Threads of the front door (HAProxy's nbthread).",
)
@click.option(
    "--ssh",
    "ssh_address",
    metavar="HOST:PORT",
    default="127.0.0.1:2222",
    show_default=True,
    help="The SSH server: the console and tenant commands (`none` turns it off).",
)
@click.option(
    "--local-node/--no-local-node",
    default=True,
    show_default=True,
    help="Run app containers on this host's Docker engine.",
)
def up(
    api_address: str | None,
    gateway_address: str,
    https_address: str,
    gateway_admin: str,
    gateway_workers: int,
    ssh_address: str,
    local_node: bool,
) -> None:
    """Run the platform in the foreground until Ctrl-C."""
    from strata import daemon  # the server's imports are heavy; other verbs should start fast

    logging.basicConfig(level=logging.INFO, format="%(asctime)s.%(msecs)03d %(name)s: %(message)s", datefmt="%H:%M:%S")
    for chatty in ("alembic", "httpx", "asyncssh", "qemu.qmp"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        options = daemon.Options(
            api=_address(api_address) if api_address else None,
            gateway=_address(gateway_address),
            https=None if https_address == "none" else _address(https_address),
            gateway_admin=_address(gateway_admin),
            gateway_workers=gateway_workers,
            ssh=None if ssh_address == "none" else _address(ssh_address),
            local_node=local_node,
        )
        daemon.run(settings(), options)
    except daemon.DaemonError as exc:
        fail(str(exc))


@click.command("doctor")
@json_option
def doctor_command(as_json: bool) -> None:
    """Check what is installed and running: daemon, Docker, QEMU, KVM, busybox."""
    from strata import doctor

    checks = doctor.run_checks(settings())
    if as_json:
        click.echo(json.dumps([asdict(check) for check in checks], indent=2))
    else:
        for check in checks:
            mark = click.style("ok ", fg="green") if check.ok else click.style("!! ", fg="red")
            click.echo(f"{mark} {check.name:<15} {check.detail}")
    if any(check.required and not check.ok for check in checks):
        raise SystemExit(1)


@click.command("console")
def console() -> None:
    """Open the terminal console: IaaS, PaaS and SaaS side by side per tenant."""
    from tui.app import StrataConsole
    from tui.dao import ConsoleData  # Textual is heavy; other verbs should start fast

    with api() as client:
        client.health()  # fail here, with the usual message, if no daemon answers
        StrataConsole(ConsoleData(client)).run()
