"""Names of tenants and apps: DNS labels, since they become hostnames (`<app>.<tenant>.<domain>`),
Docker labels and file names. Validation here is the one gate before any of those."""

import re

from tenants.errors import Invalid

MAX_NAME_LENGTH = 40
RESERVED_TENANT_NAMES = frozenset({"admin", "api", "www", "system", "root"})

NAME_PATTERN = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"  # a DNS label
_LABEL = re.compile(NAME_PATTERN)
# RFC 1123 hostname: dot-separated labels of up to 63 characters, 253 in all.
_HOSTNAME_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
MAX_HOSTNAME_LENGTH = 253


def check_name(value: str, *, field: str = "name") -> str:
    """Return `value` if it is a DNS label of 1–40 characters of `[a-z0-9-]`, not starting or ending with `-`."""
    if not isinstance(value, str) or not value:
        raise Invalid(f"{field} must not be empty", field=field)
    if len(value) > MAX_NAME_LENGTH:
        raise Invalid(f"{field} is {len(value)} characters long; at most {MAX_NAME_LENGTH} are allowed", field=field)
    if not _LABEL.fullmatch(value):
        raise Invalid(
            f"{field} {value!r} is not a DNS label: use lowercase letters, digits and '-', "
            "not starting or ending with '-'",
            field=field,
        )
    return value


def check_tenant_name(value: str) -> str:
    """A tenant name is a DNS label that is not reserved for the platform's own hostnames."""
    check_name(value, field="name")
    if value in RESERVED_TENANT_NAMES:
        raise Invalid(f"tenant name {value!r} is reserved; choose another", field="name")
    return value


def check_hostname(value: str, *, field: str = "hostnames") -> str:
    """Return `value` lower-cased if it is a fully qualified hostname (RFC 1123, at least two labels)."""
    host = value.lower() if isinstance(value, str) else ""
    labels = host.split(".")
    if (
        not host
        or len(host) > MAX_HOSTNAME_LENGTH
        or len(labels) < 2
        or not all(_HOSTNAME_LABEL.fullmatch(label) for label in labels)
    ):
        raise Invalid(f"{value!r} is not a valid hostname (like shop.example.com)", field=field)
    return host
