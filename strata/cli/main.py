"""The `strata` command: verbs a user guesses right, `--json` on every listing, errors that say what next."""

import click

from strata.cli.access_commands import keys_group, tokens_group
from strata.cli.app_commands import apps_group
from strata.cli.backup_commands import backups_group
from strata.cli.build_commands import builds_group
from strata.cli.catalog_commands import catalog_group
from strata.cli.cert_commands import ca_group, certs_group
from strata.cli.event_commands import events
from strata.cli.member_commands import members_group
from strata.cli.platform_commands import console, doctor_command, up
from strata.cli.registry_commands import registries_group
from strata.cli.runtime_commands import images_group, nodes_group
from strata.cli.service_commands import services_group
from strata.cli.status_command import status
from strata.cli.tenant_commands import plans, tenants_group
from strata.cli.usage_commands import usage
from strata.cli.volume_commands import volumes_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--token",
    envvar="STRATA_TOKEN",
    metavar="TOKEN",
    help="API token [default: $STRATA_TOKEN, else the operator token of $STRATA_HOME].",
)
@click.version_option(package_name="strata")
def main(token: str | None) -> None:
    """Strata: a self-hosted multi-tenant hosting platform (VMs, app containers, an HTTP(S) front door)."""


for command in (
    up,
    status,
    console,
    doctor_command,
    plans,
    tenants_group,
    members_group,
    apps_group,
    volumes_group,
    backups_group,
    services_group,
    catalog_group,
    builds_group,
    images_group,
    registries_group,
    certs_group,
    ca_group,
    nodes_group,
    keys_group,
    tokens_group,
    events,
    usage,
):
    main.add_command(command)
