"""Metered usage: what each tenant's apps used, summed per hour (UTC) and kind of node in `usage_hour`.

The meter (`hosting.paas.usage`) adds a batch of amounts in one transaction (`record`): rows are only ever added
to, so their sums are counters that never go down; reports sum them over a period. Each amount is added by the
database itself (`INSERT ... ON CONFLICT DO UPDATE SET x = x + excluded.x`, SQLite's and PostgreSQL's), to its
hour's row and to the all-time row in `usage_total`, which `/metrics` reads (one row per tenant, app and kind of
node, however many hours there are). The same transaction saves where the meter's count of each instance stands
(`usage_position`), so that a daemon started again goes on from there.
"""

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Table, delete, func
from sqlmodel import Session, col, select

from tenants import db
from tenants.models import App, Plan, Tenant, UsageHour, UsagePosition, UsageTotal, Volume, saved_id
from tenants.schemas import PlanRead, UsageLine, UsageReport

MIB_PER_GIB = 1024
SECONDS_PER_HOUR = 3600


@dataclass
class Amounts:
    """What was used, to be added to an hour's row."""

    cpu_seconds: float = 0.0
    memory_mib_hours: float = 0.0
    storage_gib_hours: float = 0.0
    instance_hours: float = 0.0
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def add(self, other: "Amounts") -> None:
        """Field by field, spelt out: once per instance at each sample (10,000 per 10 s at scale)."""
        self.cpu_seconds += other.cpu_seconds
        self.memory_mib_hours += other.memory_mib_hours
        self.storage_gib_hours += other.storage_gib_hours
        self.instance_hours += other.instance_hours
        self.requests += other.requests
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out


FIELDS = tuple(field.name for field in fields(Amounts))


@dataclass(frozen=True)
class UsageKey:
    """Whose usage, when (the hour, UTC, truncated) and on what kind of node (an `Isolation`)."""

    tenant: str
    app: str
    hour: datetime
    node_kind: str


@dataclass(frozen=True)
class Position:
    """Where the meter's count of an instance stands: its container's cgroup and CPU counter, read `at`."""

    instance: str
    container_id: str
    cgroup: int
    cpu_ns: int
    at: datetime


Batch = dict[UsageKey, Amounts]
Traffic = Mapping[tuple[str, str], tuple[int, int, int]]  # (tenant, app) -> requests, bytes in, bytes out


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def merge(batch: Batch, key: UsageKey, amounts: Amounts) -> None:
    batch.setdefault(key, Amounts()).add(amounts)


def record(
    session: Session,
    batch: Batch,
    traffic: Traffic,
    stored_seconds: float,
    now: datetime,
    positions: Iterable[Position] = (),
    gone: Collection[str] = (),
) -> None:
    """Add `batch`, the front door's `traffic` and `stored_seconds` of every volume's size to the hours' rows and
    the totals, save the instances' `positions` (and drop those of instances `gone`), and commit. Traffic and
    storage count on the kind of node the tenant's isolation gives it; a tenant deleted meanwhile is left out."""
    hour, whole = hour_of(now), {key: replace(amounts) for key, amounts in batch.items()}  # `batch` stays as it was
    named = {key.tenant for key in whole} | {tenant for tenant, _ in traffic}
    tenants = {t.name: t for t in session.exec(select(Tenant).where(col(Tenant.name).in_(named)))} if named else {}
    for (tenant, app), (requests, bytes_in, bytes_out) in traffic.items():
        if tenant in tenants:
            key = UsageKey(tenant, app, hour, tenants[tenant].isolation)
            merge(whole, key, Amounts(requests=requests, bytes_in=bytes_in, bytes_out=bytes_out))
    ids = {name: saved_id(tenant) for name, tenant in tenants.items()}
    for owner, app, size_mib in _volumes(session) if stored_seconds > 0 else []:
        gib_hours = size_mib / MIB_PER_GIB * stored_seconds / SECONDS_PER_HOUR
        merge(whole, UsageKey(owner.name, app, hour, owner.isolation), Amounts(storage_gib_hours=gib_hours))
        ids[owner.name] = saved_id(owner)
    rows = [
        {"tenant_id": ids[key.tenant], "app": key.app, "hour": key.hour, "node_kind": key.node_kind, **vars(amounts)}
        for key, amounts in whole.items()
        if key.tenant in ids
    ]
    # In key order, as every daemon writes them: two adding to the same rows at once lock them in one order (in
    # any other, PostgreSQL may find the two deadlocked, and fail one's write)
    rows.sort(key=itemgetter("tenant_id", "app", "hour", "node_kind"))
    totals: dict[tuple[int, str, str], dict[str, Any]] = {}
    for row in rows:
        whose = {"tenant_id": row["tenant_id"], "app": row["app"], "node_kind": row["node_kind"]}
        total = totals.setdefault(tuple(whose.values()), {**whose, **dict.fromkeys(FIELDS, 0)})
        for field in FIELDS:
            total[field] += row[field]
    if rows:
        _add(session, UsageHour.__table__, ("tenant_id", "app", "hour", "node_kind"), rows)  # type: ignore[attr-defined]
        ordered = [totals[key] for key in sorted(totals)]
        _add(session, UsageTotal.__table__, ("tenant_id", "app", "node_kind"), ordered)  # type: ignore[attr-defined]
    saved = [vars(position) for position in positions]
    if saved:  # one instance's each, by executemany: one VALUES list of 10,000 took seconds to compile
        table: Table = UsagePosition.__table__  # type: ignore[attr-defined]
        insert = db.insert(_dialect(session), table)
        changed = {name: insert.excluded[name] for name in ("container_id", "cgroup", "cpu_ns", "at")}
        session.execute(insert.on_conflict_do_update(index_elements=["instance"], set_=changed), saved)
    if gone:
        session.execute(delete(UsagePosition).where(col(UsagePosition.instance).in_(gone)))
    session.commit()


def positions(session: Session) -> dict[str, Position]:
    """Where the meter's count of each instance stood at its last write."""
    return {
        row.instance: Position(row.instance, row.container_id, row.cgroup, row.cpu_ns, row.at)
        for row in session.exec(select(UsagePosition))
    }


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def adding(dialect: str, table: Table, keys: tuple[str, ...]) -> Any:
    """An INSERT of a row that adds its amounts to the row of the same `keys` instead where there is one: no
    read, the sums made by the database."""
    insert = db.insert(dialect, table)
    added = {field: table.c[field] + insert.excluded[field] for field in FIELDS}
    return insert.on_conflict_do_update(index_elements=list(keys), set_=added)


def _add(session: Session, table: Table, keys: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """`rows` added by one statement, executed for each (executemany: compiled once, whatever their number)."""
    session.execute(adding(_dialect(session), table, keys), rows)


def _volumes(session: Session) -> list[tuple[Tenant, str, int]]:
    """Each volume's tenant, the app that mounts it ("" if none does) and its size."""
    mounted: dict[tuple[int | None, str], str] = {
        (app.tenant_id, mount["volume"]): app.name for app in session.exec(select(App)) for mount in app.volumes
    }
    query = select(Volume, Tenant).where(Volume.tenant_id == Tenant.id)
    return [
        (tenant, mounted.get((tenant.id, volume.name), ""), volume.size_mib) for volume, tenant in session.exec(query)
    ]


def report(session: Session, tenant: str | None, since: datetime) -> list[UsageLine]:
    """Usage per tenant (all, or `tenant`'s), app and kind of node, summed over the hours from `since` (its hour
    included) on, by tenant and app."""
    sums = [func.sum(getattr(UsageHour, field)) for field in FIELDS]
    query = (
        select(Tenant.name, UsageHour.app, UsageHour.node_kind, *sums)
        .where(UsageHour.tenant_id == Tenant.id, col(UsageHour.hour) >= hour_of(since))
        .group_by(Tenant.name, UsageHour.app, UsageHour.node_kind)
        .order_by(Tenant.name, UsageHour.app, UsageHour.node_kind)
    )
    if tenant is not None:
        query = query.where(Tenant.name == tenant)
    columns = ("tenant", "app", "node_kind", *FIELDS)
    return [UsageLine.model_validate(dict(zip(columns, row, strict=True))) for row in session.exec(query)]


def totals(session: Session, tenant: str | None) -> list[UsageLine]:
    """All-time usage per tenant (all, or `tenant`'s), app and kind of node: `usage_total`'s rows, one each."""
    query = (
        select(Tenant.name, UsageTotal.app, UsageTotal.node_kind, *(getattr(UsageTotal, field) for field in FIELDS))
        .where(UsageTotal.tenant_id == Tenant.id)
        .order_by(Tenant.name, UsageTotal.app, UsageTotal.node_kind)
    )
    if tenant is not None:
        query = query.where(Tenant.name == tenant)
    columns = ("tenant", "app", "node_kind", *FIELDS)
    return [UsageLine.model_validate(dict(zip(columns, row, strict=True))) for row in session.exec(query)]


def usage_report(session: Session, tenant: str | None, since: datetime, now: datetime) -> UsageReport:
    """`report` up to `now`, with the plan of each tenant (all, or `tenant`) to hold it against."""
    query = select(Tenant.name, Plan).where(Tenant.plan == Plan.name)
    if tenant is not None:
        query = query.where(Tenant.name == tenant)
    plans = {name: PlanRead.model_validate(plan) for name, plan in session.exec(query)}
    return UsageReport(since=hour_of(since), until=now, lines=report(session, tenant, since), plans=plans)
