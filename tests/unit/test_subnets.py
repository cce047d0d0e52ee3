"""Tenant networks' subnets: the first /24 of the pool that no network of the engine overlaps."""

import ipaddress

import pytest

from hosting.paas.subnets import PoolExhausted, free_subnet, subnets_of


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
