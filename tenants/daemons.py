"""The daemons on one database, as each says of itself: started, still there (`seen_at`, a heartbeat), leading.

The leader is chosen elsewhere (`strata.leadership`: a PostgreSQL advisory lock, or the only daemon on SQLite);
these rows only say who won, for `strata status` and the console. A daemon that died says nothing more: it is
shown as gone once its heartbeat is `STALE_SECONDS` old, and a leader's row is taken over by the next leader.
"""

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from tenants.models import Daemon, DoorActivity, DoorDrain
from tenants.routes import Activity
from tenants.schemas import DaemonRead

HEARTBEAT_SECONDS = 2.0
STALE_SECONDS = 3 * HEARTBEAT_SECONDS


def last_seen(session: Session, name: str) -> tuple[int, datetime] | None:
    """The pid and heartbeat of the daemon recorded under `name`, if any (a daemon's start compares two of these a
    heartbeat apart: one that moved is another daemon's, running; one that did not, a dead daemon's)."""
    row = session.get(Daemon, name)
    return None if row is None else (row.pid, row.seen_at)


def register(session: Session, name: str, pid: int, now: datetime, host: str | None = None) -> None:
    """Record the daemon as started now on `host`, standing by (a row left by an earlier daemon of its name is
    replaced)."""
    session.merge(Daemon(name=name, pid=pid, started_at=now, seen_at=now, leading_since=None, host=host))
    session.commit()


def heartbeat(
    session: Session, name: str, pid: int, now: datetime, leading_since: datetime | None, host: str | None = None
) -> None:
    """The daemon is still there, leading since `leading_since` (None: standing by); its row is made again if it
    went meanwhile (removed by hand)."""
    row = session.get(Daemon, name) or Daemon(name=name, pid=pid, started_at=now, host=host)
    row.seen_at, row.leading_since = now, leading_since
    session.add(row)
    session.commit()


def lead(session: Session, name: str, now: datetime) -> None:
    """`name` leads from now on: no other row says it leads."""
    session.exec(update(Daemon).where(col(Daemon.name) != name).values(leading_since=None))
    session.exec(update(Daemon).where(col(Daemon.name) == name).values(leading_since=now, seen_at=now))
    session.commit()


def leave(session: Session, name: str) -> None:
    """The daemon stops: its row goes."""
    row = session.get(Daemon, name)
    if row is not None:
        session.delete(row)
        session.commit()


def daemons(session: Session, now: datetime) -> list[DaemonRead]:
    """Every daemon on record, by name."""
    stale = now - timedelta(seconds=STALE_SECONDS)
    rows = session.exec(select(Daemon).order_by(col(Daemon.name)))
    return [DaemonRead(**row.model_dump(), alive=row.seen_at >= stale) for row in rows]


def leader(found: list[DaemonRead]) -> DaemonRead | None:
    """The daemon that leads: the latest to have begun leading among those alive (a leader that died keeps its
    row's `leading_since` until the next leader clears it)."""
    leading = [d for d in found if d.alive and d.leading_since is not None]
    return max(leading, key=lambda d: d.leading_since or d.started_at, default=None)


AppKey = tuple[str, str]  # (tenant, app)


def report_activity(session: Session, name: str, seen: Mapping[AppKey, Activity], now: datetime) -> None:
    """What the daemon's front door sees of each app's traffic now, replacing what it said before."""
    session.exec(delete(DoorActivity).where(col(DoorActivity.daemon) == name))
    for (tenant, app), activity in seen.items():
        last = None if activity.idle_seconds is None else now - timedelta(seconds=activity.idle_seconds)
        session.add(
            DoorActivity(daemon=name, tenant=tenant, app=app, last_request_at=last, in_flight=activity.in_flight)
        )
    session.commit()


def activity_elsewhere(session: Session, name: str, now: datetime) -> dict[AppKey, Activity]:
    """Each app's traffic at the other daemons' front doors, those alive: its least idle time and the sum of its
    requests in flight."""
    alive = select(Daemon.name).where(col(Daemon.seen_at) >= now - timedelta(seconds=STALE_SECONDS))
    rows = session.exec(
        select(DoorActivity).where(col(DoorActivity.daemon) != name, col(DoorActivity.daemon).in_(alive))
    )
    found: dict[AppKey, Activity] = {}
    for row in rows:
        idle = None if row.last_request_at is None else max(0.0, (now - row.last_request_at).total_seconds())
        found[(row.tenant, row.app)] = merged(found.get((row.tenant, row.app)), Activity(idle, row.in_flight))
    return found


def merged(one: Activity | None, other: Activity) -> Activity:
    """Two doors' view of an app as one: idle since the later of their last requests, both doors' in flight."""
    if one is None:
        return other
    idles = [idle for idle in (one.idle_seconds, other.idle_seconds) if idle is not None]
    return Activity(min(idles) if idles else None, one.in_flight + other.in_flight)


def report_drained(session: Session, name: str, instances: set[str]) -> None:
    """The instances being removed that the daemon's front door has let go of now, replacing what it said before."""
    session.exec(delete(DoorDrain).where(col(DoorDrain.daemon) == name))
    session.add_all(DoorDrain(daemon=name, instance=instance) for instance in instances)
    session.commit()


def holding(session: Session, name: str, instance: str, now: datetime) -> set[str]:
    """The other daemons alive whose front doors have not let go of `instance` yet."""
    alive = session.exec(
        select(Daemon.name).where(
            col(Daemon.name) != name, col(Daemon.seen_at) >= now - timedelta(seconds=STALE_SECONDS)
        )
    )
    let_go = session.exec(select(DoorDrain.daemon).where(DoorDrain.instance == instance))
    return set(alive) - set(let_go)


def leader_elsewhere(session: Session, host: str, now: datetime) -> DaemonRead | None:
    """The leader, alive, if it runs on another host than `host`: its engine is the image store the nodes are
    given images from, so what a daemon on `host` builds or loads into its own would never reach them."""
    found = leader(daemons(session, now))
    return found if found is not None and found.host is not None and found.host != host else None


def image_store_elsewhere(what: str, leader: DaemonRead) -> str:
    """Why a standby on another host than `leader`'s refuses to build or load images (`what`: "builds run")."""
    return (
        f"{what} where the leader's image store is: on host {leader.host} (daemon {leader.name}); use that daemon's "
        "API or SSH"
    )
