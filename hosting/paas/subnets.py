"""Tenant networks' subnets, from the platform's own pool.

Each tenant has a bridge network of its own on every node it runs on. Left to Docker, each takes a /16 or /20
of Docker's default pools, which hold 31 networks in all: the 30th tenant on a node would get no network.
The platform gives each a /24 of its pool instead (256 tenants per node for the default /16), the first one
that overlaps no network of that engine and no route of its machine (another engine's bridges, the LAN).
"""

import ipaddress
from collections.abc import Iterable
from pathlib import Path

ROUTES = Path("/proc/net/route")

# Addresses Docker gives tenant bridges; the platform sends nothing there (it reaches ports on 127.0.0.1).
TENANT_POOL = ipaddress.IPv4Network("10.210.0.0/16")
TENANT_PREFIX = 24  # 254 addresses: a tenant's instances on one node


class PoolExhausted(Exception):
    pass


def free_subnet(used: Iterable[str], pool: ipaddress.IPv4Network = TENANT_POOL, prefix: int = TENANT_PREFIX) -> str:
    """The first /`prefix` of `pool` that overlaps none of the `used` subnets (any IPv6 ones are no matter)."""
    taken = [net for net in map(ipaddress.ip_network, used) if isinstance(net, ipaddress.IPv4Network)]
    for candidate in pool.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(net) for net in taken):
            return str(candidate)
    raise PoolExhausted(f"no /{prefix} of {pool} is free for another tenant network")


def subnets_of(networks: Iterable[dict]) -> list[str]:
    """The subnets of Docker networks as `GET /networks` lists them."""
    return [config["Subnet"] for network in networks for config in (network.get("IPAM") or {}).get("Config") or []
            if config.get("Subnet")]  # fmt: skip


def host_routes(routes: Path = ROUTES) -> list[str]:
    """The destinations of this host's IPv4 routes but the default one."""
    return parse_routes(routes.read_text())


def parse_routes(table: str) -> list[str]:
    """The destinations of the IPv4 routes but the default one in a `/proc/net/route` (little-endian hex)."""
    found = []
    for line in table.splitlines()[1:]:
        fields = line.split()
        destination, mask = (int.from_bytes(bytes.fromhex(field), "little") for field in (fields[1], fields[7]))
        if mask:
            found.append(str(ipaddress.IPv4Network((destination, bin(mask).count("1")), strict=False)))
    return found
