"""The audit log: every change the service layer makes writes one Event in the same transaction."""

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table
from sqlmodel import Session, col, select

from tenants.models import Event

MAX_EVENTS_PER_PAGE = 1_000


def record(session: Session, actor: str, action: str, tenant: str | None = None, **detail: Any) -> Event:
    """Add an event to the session; it commits with the change it describes, or not at all."""
    event = Event(actor=actor, action=action, tenant=tenant, detail=detail)
    session.add(event)
    return event


def record_all(session: Session, actor: str, events: Iterable[tuple[str, str | None, dict[str, Any]]]) -> None:
    """Add events, each (action, tenant, detail), by one statement: `record`'s rows are inserted one statement
    each (the ORM reads back each new id), and a reconciler pass may write 20,000."""
    rows = [Event(actor=actor, action=action, tenant=tenant, detail=detail) for action, tenant, detail in events]
    if rows:
        table: Table = Event.__table__  # type: ignore[attr-defined]
        session.execute(table.insert(), [row.model_dump(exclude={"id"}) for row in rows])


def list_events(
    session: Session,
    *,
    tenant: str | None = None,
    actor_prefix: str | None = None,
    limit: int = 100,
    before: int | None = None,
) -> list[Event]:
    """The newest events first; `actor_prefix` keeps those of actors so named (`TENANT/MEMBER/`: a member's);
    `before` (an event id) pages further back."""
    query = select(Event).order_by(col(Event.id).desc()).limit(min(limit, MAX_EVENTS_PER_PAGE))
    if tenant is not None:
        query = query.where(Event.tenant == tenant)
    if actor_prefix is not None:
        query = query.where(col(Event.actor).startswith(actor_prefix, autoescape=True))
    if before is not None:
        query = query.where(col(Event.id) < before)
    return list(session.exec(query))
