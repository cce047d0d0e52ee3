"""Metered usage through the API, the CLI and Prometheus' text format: an operator sees every tenant's, a tenant's
token its own only; `since` picks the hours. The rows are written as the daemon's meter writes them."""

import csv
import io
import json
import os
import re
from datetime import UTC, datetime

import httpx
import pytest

from tenants import db
from tenants.client import ApiError
from tenants.enums import Isolation, Role
from tenants.schemas import TenantCreate, TokenCreate
from tenants.usage import Amounts, UsageKey, record
from tests.containers import wait_for
from tests.harness import Daemon

UNPARSED = "strata_usage_log_lines_unparsed_total"
DECEMBER, NOVEMBER = datetime(2026, 12, 2, 10, 30, tzinfo=UTC), datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def meter(daemon: Daemon, tenant: str, app: str, when: datetime, cpu_seconds: float, requests: int) -> None:
    engine = db.open_engine(f"sqlite:///{daemon.home / 'strata.db'}")
    try:
        with db.session(engine) as session:
            key = UsageKey(tenant, app, when.replace(minute=0, second=0, microsecond=0), Isolation.SHARED)
            record(session, {key: Amounts(cpu_seconds=cpu_seconds)}, {(tenant, app): (requests, 100, 1000)}, 0, when)
    finally:
        engine.dispose()


@pytest.fixture
def metered(daemon: Daemon, unique: str) -> tuple[str, str, str]:
    """Two tenants with usage in November and December; a token of the first."""
    other = f"{unique}-b"
    with daemon.operator() as api:
        for name in (unique, other):
            api.create_tenant(TenantCreate(name=name))
        token = api.create_token(TokenCreate(role=Role.TENANT, tenant=unique)).token
    meter(daemon, unique, "web", NOVEMBER, 100.0, 10)
    meter(daemon, unique, "web", DECEMBER, 2.5, 3)
    meter(daemon, other, "api", DECEMBER, 7.0, 1)
    return unique, other, token


def test_a_tenants_usage_since_a_day_sums_its_hours(daemon: Daemon, metered: tuple[str, str, str]) -> None:
    tenant, _, token = metered
    with daemon.client(token) as api:
        [december] = api.usage(tenant, since=DECEMBER.date()).lines
        [everything] = api.usage(tenant, since=NOVEMBER.date()).lines
        report = api.usage(tenant, since=NOVEMBER.date())
    assert (december.app, december.cpu_seconds, december.requests) == ("web", 2.5, 3)
    assert (everything.cpu_seconds, everything.requests, everything.bytes_in) == (102.5, 13, 200)
    assert report.plans[tenant].name == "small" and report.until > report.since
    for bad in ("0", "2026-13-01", "yesterday"):
        answer = httpx.get(f"{daemon.url}/usage?since={bad}", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 422 and answer.json()["error"]["field"] == "since", bad


def test_an_operator_sees_every_tenant_and_a_tenant_its_own_only(daemon: Daemon, metered: tuple[str, str, str]) -> None:
    tenant, other, token = metered
    with daemon.operator() as api:
        seen = {line.tenant for line in api.usage(since=DECEMBER.date()).lines}
    assert {tenant, other} <= seen
    with daemon.client(token) as api:
        assert {line.tenant for line in api.usage(since=DECEMBER.date()).lines} == {tenant}
        with pytest.raises(ApiError) as refused:
            api.usage(other)
    assert refused.value.status == 404


def test_prometheus_reads_each_tenants_counters_and_a_tenant_its_own(
    daemon: Daemon, metered: tuple[str, str, str]
) -> None:
    tenant, other, token = metered
    operator = httpx.get(f"{daemon.url}/metrics", headers={"Authorization": f"Bearer {daemon.operator_token}"})
    own = httpx.get(f"{daemon.url}/metrics", headers={"Authorization": f"Bearer {token}"})

    assert operator.headers["content-type"].startswith("text/plain")
    assert "# TYPE strata_usage_cpu_seconds_total counter" in operator.text
    assert f'strata_usage_cpu_seconds_total{{tenant="{tenant}",app="web",node_kind="shared"}} 102.5' in operator.text
    assert f'strata_usage_requests_total{{tenant="{other}",app="api",node_kind="shared"}} 1' in operator.text
    assert f'tenant="{tenant}"' in own.text and f'tenant="{other}"' not in own.text
    assert httpx.get(f"{daemon.url}/metrics").status_code == 401


def lost_lines(daemon: Daemon, token: str) -> dict[str, int]:
    text = httpx.get(f"{daemon.url}/metrics", headers={"Authorization": f"Bearer {token}"}).text
    return {name: int(value) for name, value in re.findall(r"^(strata_usage_log_lines_\w+) (\d+)$", text, re.M)}


def test_access_log_lines_that_cannot_be_metered_are_counted_for_operators(
    daemon: Daemon, metered: tuple[str, str, str]
) -> None:
    """A line in the front door's log that is no request's costs that request's usage: counted, not silent."""
    _, _, token = metered
    before = lost_lines(daemon, daemon.operator_token)
    fifo = os.open(daemon.home / "haproxy" / "access.fifo", os.O_WRONLY | os.O_NONBLOCK)  # as HAProxy writes
    try:
        os.write(fifo, b"not a request\n" + b'{"status":200,"cut short\n')
    finally:
        os.close(fifo)

    def counted() -> dict[str, int] | None:
        now = lost_lines(daemon, daemon.operator_token)
        return now if now[UNPARSED] >= before[UNPARSED] + 2 else None

    after = wait_for(counted, timeout=10, what="the lines counted")
    assert after[UNPARSED] == before[UNPARSED] + 2
    assert "strata_usage_log_lines_dropped_total" in after
    assert lost_lines(daemon, token) == {}  # no tenant's


def test_the_cli_prints_usage_as_a_table_json_and_csv(daemon: Daemon, metered: tuple[str, str, str]) -> None:
    tenant, _, _ = metered
    table = daemon.cli("usage", "--tenant", tenant, "--since", "2026-11-01")
    as_json = daemon.cli("usage", "--tenant", tenant, "--since", "2026-11-01", "--json")
    as_csv = daemon.cli("usage", "--tenant", tenant, "--since", "2026-12-01", "--csv")

    assert table.returncode == 0 and "CPU-S" in table.stdout and "102.5" in table.stdout
    assert json.loads(as_json.stdout)["lines"][0]["cpu_seconds"] == 102.5
    [row] = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert (row["tenant"], row["app"], row["cpu_seconds"], row["requests"]) == (tenant, "web", "2.5", "3")
    both = daemon.cli("usage", "--json", "--csv")
    assert both.returncode != 0 and "choose one of --json and --csv" in both.stderr
