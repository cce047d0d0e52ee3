import pytest

from tenants.errors import QuotaExceeded
from tenants.models import App, Plan
from tenants.quotas import check_quota, usage_of

SMALL = Plan(name="small", max_apps=3, max_instances=6, max_cpu_millicores=2000, max_memory_mib=1024)


def app(replicas: int, cpu: int = 250, memory: int = 128) -> App:
    return App(tenant_id=1, name="a", image="i", replicas=replicas, cpu_millicores=cpu, memory_mib=memory)


def test_usage_counts_every_replica_at_its_full_limits() -> None:
    usage = usage_of([app(2, cpu=500, memory=64), app(3)])
    assert (usage.apps, usage.instances, usage.cpu_millicores, usage.memory_mib) == (2, 5, 1750, 512)


@pytest.mark.parametrize(
    "apps, quota, numbers",
    [
        ([app(1)] * 4, "apps", "needs 4 in all, plan 'small' allows 3"),
        ([app(7, cpu=10, memory=6)], "instances", "needs 7 in all, plan 'small' allows 6"),
        ([app(3, cpu=700)], "CPU", "needs 2100 millicores in all, plan 'small' allows 2000 millicores"),
        ([app(2, memory=600)], "memory", "needs 1200 MiB in all, plan 'small' allows 1024 MiB"),
    ],
)
def test_a_change_past_a_quota_is_refused_naming_the_quota_and_numbers(
    apps: list[App], quota: str, numbers: str
) -> None:
    with pytest.raises(QuotaExceeded) as refused:
        check_quota(SMALL, usage_of(apps))
    assert refused.value.message.startswith(f"{quota} quota exceeded")
    assert numbers in refused.value.message


def test_exactly_at_the_quota_is_allowed() -> None:
    check_quota(SMALL, usage_of([app(4, cpu=500, memory=256), app(2, cpu=0, memory=0), app(0)]))
