import pytest

from tenants.errors import Invalid
from tenants.names import check_hostname, check_name, check_tenant_name


@pytest.mark.parametrize("name", ["a", "acme", "acme-2", "0day", "a" * 40, "x-y-z"])
def test_dns_labels_are_accepted(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name, reason",
    [
        ("", "empty"),
        ("a" * 41, "at most 40"),
        ("-acme", "DNS label"),
        ("acme-", "DNS label"),
        ("Acme", "DNS label"),
        ("ac_me", "DNS label"),
        ("ac.me", "DNS label"),
        ("../etc", "DNS label"),
        ("acme;rm -rf /", "DNS label"),
        ("аcme", "DNS label"),  # Cyrillic 'а': a look-alike of acme
        ("a" * 10_000, "at most 40"),
    ],
)
def test_other_names_are_refused_with_the_reason(name: str, reason: str) -> None:
    with pytest.raises(Invalid, match=reason) as refused:
        check_name(name, field="app")
    assert refused.value.field == "app"


@pytest.mark.parametrize("name", ["admin", "api", "www", "system", "root"])
def test_reserved_tenant_names_are_refused(name: str) -> None:
    with pytest.raises(Invalid, match="reserved"):
        check_tenant_name(name)
    assert check_name(name) == name  # reserved for tenants only: an app may be called "api"


@pytest.mark.parametrize("host", ["shop.example.com", "Shop.Example.COM", "a.b"])
def test_hostnames_are_accepted_lowercased(host: str) -> None:
    assert check_hostname(host) == host.lower()


@pytest.mark.parametrize("host", ["localhost", "-a.example.com", "a..b", "a.b/c", "a b.com", "é.com", "a." * 130 + "b"])
def test_bad_hostnames_are_refused(host: str) -> None:
    with pytest.raises(Invalid):
        check_hostname(host)
