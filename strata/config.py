"""Settings of one Strata installation, read from the environment with working defaults.

Everything the daemon keeps lives under `STRATA_HOME` (default `~/.local/share/strata`), backups too unless
`STRATA_BACKUP_S3_URL` names an S3-compatible store for them.
"""

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hosting.paas.backup_store import S3Location
from hosting.paas.scheduler import Strategy

DEFAULT_HOME = Path("~/.local/share/strata")
DEFAULT_DOMAIN = "localhost"
DEFAULT_DOCKER_URL = "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    domain: str
    images_dir: Path  # VM guest images, built here (`strata images node-build`)
    docker_url: str  # this host's Docker engine (the `local` node), where DOCKER_HOST says, as for `docker`
    libvirt_uri: str | None  # VM nodes through libvirt too (driver `libvirt`), at this URI of this host
    scheduler: Strategy  # how placement orders the nodes that fit (STRATA_SCHEDULER: spread or binpack)
    acme_directory: str | None = None  # an ACME server's directory URL: certificates for names not under .localhost
    acme_email: str | None = None  # the ACME account's contact
    acme_ca_bundle: Path | None = None  # CA certificates to trust for the ACME server's own HTTPS (a private CA)
    backup_s3: S3Location | None = None  # where verified backups are kept; None: under `home`/backups
    daemon_name: str = ""  # this daemon among those on one database (STRATA_DAEMON_NAME; its host's name)

    @classmethod
    def from_env(cls, home: Path | None = None) -> "Settings":
        home = (home or Path(os.environ.get("STRATA_HOME") or DEFAULT_HOME)).expanduser().resolve()
        return cls(
            home=home,
            database_url=os.environ.get("STRATA_DATABASE_URL") or f"sqlite:///{home / 'strata.db'}",
            domain=os.environ.get("STRATA_DOMAIN") or DEFAULT_DOMAIN,
            images_dir=Path(os.environ.get("STRATA_IMAGES_DIR") or home / "images").expanduser().resolve(),
            docker_url=os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_URL,
            libvirt_uri=os.environ.get("STRATA_LIBVIRT_URI") or None,
            scheduler=_strategy(os.environ.get("STRATA_SCHEDULER") or Strategy.SPREAD),
            acme_directory=os.environ.get("STRATA_ACME_DIRECTORY") or None,
            acme_email=os.environ.get("STRATA_ACME_EMAIL") or None,
            acme_ca_bundle=Path(bundle) if (bundle := os.environ.get("STRATA_ACME_CA_BUNDLE")) else None,
            backup_s3=_backup_s3(
                os.environ.get("STRATA_BACKUP_S3_URL") or None,
                os.environ.get("STRATA_BACKUP_S3_ENDPOINT") or None,
                os.environ.get("STRATA_BACKUP_S3_REGION") or None,
            ),
            daemon_name=os.environ.get("STRATA_DAEMON_NAME") or socket.gethostname(),
        )

    @property
    def api_socket(self) -> Path:
        return self.home / "api.sock"

    @property
    def operator_token_file(self) -> Path:
        return self.home / "operator.token"

    @property
    def platform_id_file(self) -> Path:
        return self.home / "platform-id"

    @property
    def lock_file(self) -> Path:
        return self.home / "daemon.lock"

    @property
    def secret_key_file(self) -> Path:
        """The key that encrypts secrets at rest (registry passwords), made on first use, mode 0600."""
        return self.home / "secret.key"


def _strategy(value: str) -> Strategy:
    try:
        return Strategy(value)
    except ValueError:
        raise ValueError(f"STRATA_SCHEDULER={value!r}: expected one of {', '.join(Strategy)}") from None


def _backup_s3(url: str | None, endpoint: str | None, region: str | None) -> S3Location | None:
    """`s3://BUCKET[/PREFIX]` and an optional endpoint (`http(s)://HOST[:PORT]`) as a location. A credential
    in either is refused, and the message never repeats the value: they belong where boto3 looks for them."""
    if url is None:
        if endpoint is not None:
            raise ValueError("STRATA_BACKUP_S3_ENDPOINT is set without STRATA_BACKUP_S3_URL (s3://BUCKET[/PREFIX])")
        return None
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ValueError("STRATA_BACKUP_S3_URL holds a credential: give it as AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY, or in ~/.aws/credentials, not in the URL")  # fmt: skip
    if parts.scheme != "s3" or not parts.netloc or ":" in parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"STRATA_BACKUP_S3_URL={url!r}: expected s3://BUCKET or s3://BUCKET/PREFIX")
    if endpoint is not None:
        where = urlsplit(endpoint)
        if where.username is not None or where.password is not None:
            raise ValueError("STRATA_BACKUP_S3_ENDPOINT holds a credential: give it as AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY, or in ~/.aws/credentials, not in the URL")  # fmt: skip
        if where.scheme not in ("http", "https") or not where.hostname:
            raise ValueError(f"STRATA_BACKUP_S3_ENDPOINT={endpoint!r}: expected http(s)://HOST[:PORT]")
    return S3Location(bucket=parts.netloc, prefix=parts.path.strip("/"), endpoint_url=endpoint, region=region)
