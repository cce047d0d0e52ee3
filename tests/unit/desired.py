"""A desired app for tests of the control loop's decisions, changed field by field."""

from dataclasses import replace
from typing import Any

from tenants.instances import DesiredApp


def desired_app(name: str = "web", **changes: Any) -> DesiredApp:
    """`acme/NAME` on the small plan's limits: 1 replica of strata/hello on 8080 with a /healthz check."""
    base = DesiredApp(
        tenant="acme",
        isolation="shared",
        app_id=hash(name) % 1000,
        name=name,
        revision=1,
        replicas=1,
        image="strata/hello",
        command=None,
        port=8080,
        cpu_millicores=250,
        memory_mib=128,
        env={},
        health_path="/healthz",
        hostnames=[],
        requests_per_second=100,
        burst=200,
        max_body_mib=10,
    )
    return replace(base, **changes)
