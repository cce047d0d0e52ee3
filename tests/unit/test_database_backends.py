"""What the control plane stores comes back the same from SQLite and from PostgreSQL: aware UTC times, JSON
values, sizes past 2 GiB, and a unique name lost to a concurrent writer as the Conflict a check gives."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from tenants import apps, db, images, tenancy
from tenants.enums import ImageSource
from tenants.errors import Conflict
from tenants.models import Event, Tenant
from tenants.schemas import AppSpec, TenantCreate

FIVE_GIB = 5 << 30


def test_times_come_back_aware_and_in_utc(engine: Engine) -> None:
    written = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    with db.session(engine) as session:
        session.add(Event(time=written, actor="operator", action="test"))
        session.commit()
    with db.session(engine) as session:
        (read,) = session.exec(select(Event.time)).all()
    assert (read, read.tzinfo) == (written, UTC)


def test_json_values_come_back_as_written(engine: Engine) -> None:
    spec = AppSpec(image="strata/hello", command=["sh", "-c", "echo 'ünïcode' \"$X\""], env={"X": "a=b", "Y": ""})
    with db.session(engine) as session:
        tenancy.create_tenant(session, "operator", TenantCreate(name="acme"))
        apps.deploy(session, "operator", "acme", "web", spec, platform_domain="x")
    with db.session(engine) as session:
        app = apps.get_app(session, tenancy.get_tenant(session, "acme"), "web")
    assert (app.command, app.env) == (spec.command, spec.env)


def test_sizes_past_two_gib_are_kept(engine: Engine) -> None:
    with db.session(engine) as session:
        tenant = tenancy.create_tenant(session, "operator", TenantCreate(name="acme"))
        images.record(session, tenant, "registry.example.com/big:1", "sha256:b16", ImageSource.PULL, FIVE_GIB)
        session.commit()
    with db.session(engine) as session:
        [(_, image)] = images.list_owned(session, None)
    assert image.size_bytes == FIVE_GIB


def test_a_name_taken_by_a_concurrent_writer_is_a_conflict_and_the_session_goes_on(engine: Engine) -> None:
    with db.session(engine) as late, db.session(engine) as first:
        late.add(Tenant(name="acme", plan="small"))  # checked free, not written yet
        first.add(Tenant(name="acme", plan="small"))
        first.commit()
        with pytest.raises(Conflict, match="taken"):
            db.commit(late, conflict="taken")
        assert [t.name for t in tenancy.list_tenants(late)] == ["acme"]
