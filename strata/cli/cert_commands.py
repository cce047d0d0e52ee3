"""`strata certs ...` (the front door's HTTPS certificates) and `strata ca export` (the local CA to trust)."""

from pathlib import Path

import click

from strata.cli.context import api, json_option
from strata.cli.output import emit_json, table
from tenants.schemas import CertificateUpload


@click.group("certs")
def certs_group() -> None:
    """HTTPS certificates: one per hostname served, from the local CA, ACME, or installed by an operator."""


@certs_group.command("list")
@json_option
def list_(as_json: bool) -> None:
    """Each hostname's certificate: where it came from, its issuer, when it expires, the last error ordering it."""
    with api() as client:
        rows = client.certificates()
    if as_json:
        return emit_json(rows)
    table(
        rows,
        [("hostname", lambda r: r.hostname), ("source", lambda r: r.source or "-"),
         ("issuer", lambda r: r.issuer or "-"),
         ("expires", lambda r: r.not_after.strftime("%Y-%m-%d %H:%M") if r.not_after else "-"),
         ("last error", lambda r: r.last_error or "")],
    )  # fmt: skip


@certs_group.command("add")
@click.argument("hostname")
@click.option("--cert", "cert_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The certificate (PEM), leaf first, then its intermediates.")  # fmt: skip
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Its private key (PEM, unencrypted).")  # fmt: skip
def add(hostname: str, cert_file: Path, key_file: Path) -> None:
    """Serve HOSTNAME with this certificate from now on (the platform never replaces it)."""
    upload = CertificateUpload(certificate_pem=cert_file.read_text(), key_pem=key_file.read_text())
    with api() as client:
        added = client.add_certificate(hostname, upload)
    click.echo(f"{hostname}: served with the certificate from {added.issuer}, valid until {added.not_after:%Y-%m-%d}")


@click.group("ca")
def ca_group() -> None:
    """The platform's local certificate authority (for apps under the default domain, `localhost`)."""


@ca_group.command("export")
def export() -> None:
    """Print the local CA's certificate (PEM): give it to curl (--cacert) or a browser to trust the apps."""
    with api() as client:
        click.echo(client.local_ca(), nl=False)
