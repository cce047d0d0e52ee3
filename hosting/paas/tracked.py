"""What the reconciler knows of one instance: its row (rebuilt after a restart) and what only memory holds."""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter

from tenants.enums import InstanceState
from tenants.models import Instance

PERSISTED = tuple(Instance.model_fields)  # what of a Tracked instance its row keeps
_persisted = attrgetter(*PERSISTED)  # their values, as one tuple, in C


@dataclass
class Tracked:
    """One instance. The fields up to `published` are its row's; the rest live in memory and start afresh
    after a restart of the daemon (crash counts, backoff deadlines, health streaks)."""

    id: str
    app_id: int
    node: str
    container_id: str
    revision: int
    state: InstanceState
    endpoint: str | None
    restarts: int = 0
    started_at: datetime | None = None
    last_health: str | None = None
    message: str | None = None  # why it is not ready, in words
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    published: int | None = None  # its container's port on its node's machine
    failures: int = 0  # health checks failed in a row
    crashes: int = 0  # crashes in a row (forgiven once stable)
    restart_at: float | None = None  # when to restart after a crash (monotonic)
    checked_at: float = 0.0
    unhealthy_since: float | None = None
    stopped_because: str | None = None  # why the reconciler stopped it (a liveness failure), for its message
    saved: tuple[object, ...] | None = None  # the row as last written

    def row(self) -> Instance:
        return Instance(**{name: getattr(self, name) for name in PERSISTED})

    def snapshot(self) -> tuple[object, ...]:
        """The persisted fields: the row is rewritten only when this changes (taken of every instance each pass)."""
        return _persisted(self)

    def age(self) -> float:
        """Seconds since its container last started (0 when unknown)."""
        return (datetime.now(UTC) - self.started_at).total_seconds() if self.started_at else 0.0

    @classmethod
    def adopt(cls, row: Instance) -> "Tracked":
        tracked = cls(**{name: getattr(row, name) for name in PERSISTED})
        # An instance caught mid-removal by a restart is judged afresh by its health check.
        tracked.state = InstanceState.STARTING if row.state == InstanceState.STOPPING else InstanceState(row.state)
        tracked.saved = tracked.snapshot()
        return tracked
