"""`/status`: which daemon leads the platform and since when, and the daemons standing by (operators only)."""

from fastapi import APIRouter

from strata.api.deps import DB, Config, Operator
from tenants import daemons, db
from tenants.schemas import StatusRead

router = APIRouter(tags=["platform"])


@router.get("/status")
def status(session: DB, settings: Config, _: Operator) -> StatusRead:
    found = daemons.daemons(session, db.clock(session))
    return StatusRead(
        database=session.get_bind().dialect.name,
        answered_by=settings.daemon_name,
        leader=daemons.leader(found),
        daemons=found,
    )
