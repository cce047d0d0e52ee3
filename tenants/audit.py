"""The audit log: every change the service layer makes writes one Event in the same transaction."""

from typing import Any

from sqlmodel import Session, col, select

from tenants.models import Event

MAX_EVENTS_PER_PAGE = 1_000


def record(session: Session, actor: str, action: str, tenant: str | None = None, **detail: Any) -> Event:
    """Add an event to the session; it commits with the change it describes, or not at all."""
    event = Event(actor=actor, action=action, tenant=tenant, detail=detail)
    session.add(event)
    return event


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
