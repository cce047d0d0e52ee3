"""Tenant networks' subnets: the first /24 of the pool that no network of the engine overlaps."""

import ipaddress
from pathlib import Path

import pytest

from hosting.paas.subnets import PoolExhausted, free_subnet, host_routes, subnets_of


@pytest.mark.parametrize(
    "used, expected",
    [
        ([], "10.210.0.0/24"),
        (["172.17.0.0/16", "fd00::/64"], "10.210.0.0/24"),  # Docker's bridge and IPv6 are no matter
        (["10.210.0.0/24", "10.210.1.0/24"], "10.210.2.0/24"),
        (["10.210.0.0/24", "10.210.2.0/24"], "10.210.1.0/24"),  # a gap left by a removed network is reused
        (["10.210.0.0/23"], "10.210.2.0/24"),  # a wider network made by someone else
        (["10.0.0.0/8"], None),  # the whole pool inside another network
    ],
)
def test_the_first_free_block_of_the_pool(used: list[str], expected: str | None) -> None:
    if expected is None:
        with pytest.raises(PoolExhausted, match="10.210.0.0/16"):
            free_subnet(used)
    else:
        assert free_subnet(used) == expected


def test_a_full_pool_is_a_clear_error() -> None:
    pool = ipaddress.IPv4Network("10.9.0.0/23")
    assert free_subnet(["10.9.0.0/24"], pool) == "10.9.1.0/24"
    with pytest.raises(PoolExhausted, match="no /24 of 10.9.0.0/23 is free"):
        free_subnet(["10.9.0.0/24", "10.9.1.0/24"], pool)


def test_subnets_are_read_from_dockers_network_list() -> None:
    listed = [
        {"Name": "bridge", "IPAM": {"Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]}},
        {"Name": "host", "IPAM": {"Config": []}},
        {"Name": "none", "IPAM": {"Config": None}},
        {"Name": "t", "IPAM": {"Config": [{"Subnet": "10.210.0.0/24"}, {"Subnet": "fd00::/64"}]}},
    ]
    assert subnets_of(listed) == ["172.17.0.0/16", "10.210.0.0/24", "fd00::/64"]


def test_this_hosts_routes_are_read_without_the_default_one(tmp_path: Path) -> None:
    routes = tmp_path / "route"
    routes.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "br-1\t0000D20A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    )
    assert host_routes(routes) == ["10.210.0.0/24", "192.0.2.0/24", "172.17.0.0/16"]
    assert free_subnet(host_routes(routes)) == "10.210.1.0/24"  # another engine's bridge on this host
