"""Quota arithmetic: what a tenant's apps claim, and the check that a change stays within its plan."""

from collections.abc import Iterable

from tenants.errors import QuotaExceeded
from tenants.models import App, Plan
from tenants.schemas import Usage


def usage_of(apps: Iterable[App]) -> Usage:
    """Sum the claims of `apps`: each replica counts its full CPU and memory limit."""
    apps = list(apps)
    return Usage(
        apps=len(apps),
        instances=sum(app.replicas for app in apps),
        cpu_millicores=sum(app.replicas * app.cpu_millicores for app in apps),
        memory_mib=sum(app.replicas * app.memory_mib for app in apps),
    )


def check_quota(plan: Plan, usage: Usage) -> None:
    """Refuse `usage` (the tenant's total after the change) if it is past any limit of `plan`."""
    limits = [
        ("apps", usage.apps, plan.max_apps, ""),
        ("instances", usage.instances, plan.max_instances, ""),
        ("CPU", usage.cpu_millicores, plan.max_cpu_millicores, " millicores"),
        ("memory", usage.memory_mib, plan.max_memory_mib, " MiB"),
    ]
    for quota, wanted, allowed, unit in limits:
        if wanted > allowed:
            raise QuotaExceeded(
                f"{quota} quota exceeded: this change needs {wanted}{unit} in all, "
                f"plan {plan.name!r} allows {allowed}{unit}; scale something down or move to a larger plan",
                field=quota.lower(),
            )
