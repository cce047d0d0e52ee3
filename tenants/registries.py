"""Tenants' logins to container registries: one per tenant and registry host, the password encrypted at rest
(`tenants.secrets`), used for that tenant's pulls only (`auth_for`), never shown, logged or audited."""

import re
from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from tenants import audit
from tenants.errors import Invalid, NotFound
from tenants.models import RegistryCredential, Tenant, saved_id, utcnow
from tenants.references import registry_host
from tenants.schemas import RegistryRead
from tenants.secrets import SecretBox
from tenants.tenancy import get_tenant

MAX_PORT = 65_535
# host[:port]: a DNS name or an IPv4 address, then a port.
_HOST = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:[0-9]{1,5})?")
# What registries take as a user name (robot accounts have `$` and `+`, GCR's `_json_key`, emails `@`), minus
# what breaks HTTP Basic auth (`:`) or a log line (spaces, control characters).
_USERNAME = re.compile(r"[A-Za-z0-9._@$+\-]{1,255}")


@dataclass(frozen=True)
class Login:
    """A tenant's login to one registry, decrypted for one pull."""

    username: str
    password: str = field(repr=False)


def check_host(value: str) -> str:
    """The registry as image references name it, lower-cased: `registry.example.com`, `localhost:5000`."""
    host = value.lower()
    port = host.rpartition(":")[2] if ":" in host else None
    if len(host) > 253 or not _HOST.fullmatch(host) or (port is not None and not 1 <= int(port) <= MAX_PORT):
        raise Invalid(
            f"{value!r} is not a registry host: give HOST or HOST:PORT as image references name it "
            "(registry.example.com, localhost:5000)",
            field="host",
        )
    if not ("." in host or ":" in host or host == "localhost"):
        raise Invalid(
            f"{value!r} is no registry as Docker reads references: a registry host has a '.' or a ':' or is "
            f"localhost ({value}:5000, {value}.example.com); Docker Hub is docker.io",
            field="host",
        )
    return registry_host(f"{host}/x")  # Docker Hub's other names are docker.io


def check_username(value: str) -> str:
    if not _USERNAME.fullmatch(value):
        raise Invalid(
            "the user name must be 1-255 characters of letters, digits and . _ @ $ + - (no spaces or ':')",
            field="username",
        )
    return value


def add(
    session: Session, box: SecretBox, actor: str, tenant_name: str, host: str, username: str, password: str
) -> tuple[RegistryRead, bool]:
    """Store (or replace) the tenant's login to `host`; returns it as shown and whether it is new. The audit
    event names the registry and the user, never the password."""
    host, username = check_host(host), check_username(username)
    if not password or "\x00" in password or "\n" in password:
        raise Invalid("the password must be one line, not empty", field="password")
    tenant = get_tenant(session, tenant_name)
    row = _find(session, tenant, host)
    created = row is None
    encrypted = box.encrypt(password)  # before anything changes: a key that cannot be used changes nothing
    if row is None:
        row = RegistryCredential(tenant_id=saved_id(tenant), host=host, username=username, password_encrypted="")
    row.username, row.password_encrypted, row.created_at = username, encrypted, utcnow()
    session.add(row)
    audit.record(session, actor, "registry.add", tenant.name, registry=host, username=username, replaced=not created)
    session.commit()
    return _read(tenant.name, row), created


def list_logins(session: Session, tenant_name: str | None) -> list[RegistryRead]:
    """One tenant's logins, or every tenant's (for an operator); never a password."""
    query = select(Tenant.name, RegistryCredential).join(Tenant, col(Tenant.id) == RegistryCredential.tenant_id)
    if tenant_name is not None:
        query = query.where(RegistryCredential.tenant_id == get_tenant(session, tenant_name).id)
    rows = session.exec(query.order_by(Tenant.name, RegistryCredential.host))
    return [_read(name, row) for name, row in rows]


def remove(session: Session, actor: str, tenant_name: str, host: str) -> None:
    tenant = get_tenant(session, tenant_name)
    row = _find(session, tenant, check_host(host))
    if row is None:
        raise NotFound(f"tenant {tenant.name!r} has no login to registry {host!r}", field="host")
    session.delete(row)
    audit.record(session, actor, "registry.remove", tenant.name, registry=row.host, username=row.username)
    session.commit()


def auth_for(session: Session, box: SecretBox, tenant: Tenant, reference: str) -> Login | None:
    """The tenant's login to the registry `reference` is pulled from, if it has one (anonymous otherwise)."""
    row = _find(session, tenant, registry_host(reference))
    return None if row is None else Login(row.username, box.decrypt(row.password_encrypted))


def _find(session: Session, tenant: Tenant, host: str) -> RegistryCredential | None:
    query = select(RegistryCredential).where(RegistryCredential.tenant_id == tenant.id, RegistryCredential.host == host)
    return session.exec(query).first()


def _read(tenant: str, row: RegistryCredential) -> RegistryRead:
    return RegistryRead(tenant=tenant, host=row.host, username=row.username, created_at=row.created_at)
