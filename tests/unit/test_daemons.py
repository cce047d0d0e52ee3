"""The daemons' rows (who leads, who is gone), what their doors report, and what they must share: on SQLite and
PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from tenants import daemons, db, installation
from tenants.errors import Invalid
from tenants.routes import Activity

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_the_leader_is_the_latest_to_lead_among_those_alive(engine: Engine) -> None:
    with db.session(engine) as session:
        daemons.register(session, "a", 1, NOW - timedelta(seconds=60))
        daemons.lead(session, "a", NOW - timedelta(seconds=60))
        daemons.register(session, "b", 2, NOW)
        found = daemons.daemons(session, NOW)
    assert [(d.name, d.alive) for d in found] == [("a", False), ("b", True)]  # a's heartbeat is a minute old
    assert daemons.leader(found) is None  # a died leading: nobody leads until b takes the lock
    with db.session(engine) as session:
        daemons.lead(session, "b", NOW)
        daemons.heartbeat(session, "a", 1, NOW, None)  # a came back, standing by
        found = daemons.daemons(session, NOW)
    leader = daemons.leader(found)
    assert leader is not None and (leader.name, leader.leading_since) == ("b", NOW)
    assert [d.leading_since for d in found] == [None, NOW]
    with db.session(engine) as session:
        daemons.leave(session, "b")
        assert [d.name for d in daemons.daemons(session, NOW)] == ["a"]


def test_an_app_is_idle_only_as_long_as_at_its_busiest_door(engine: Engine) -> None:
    with db.session(engine) as session:
        for name in ("leader", "b", "c", "gone"):
            daemons.register(session, name, 1, NOW)
        daemons.heartbeat(session, "gone", 1, NOW - timedelta(minutes=5), None)
        daemons.report_activity(session, "b", {("acme", "web"): Activity(30.0, 0)}, NOW)
        daemons.report_activity(
            session, "c", {("acme", "web"): Activity(5.0, 2), ("acme", "api"): Activity(None, 0)}, NOW
        )
        daemons.report_activity(session, "gone", {("acme", "web"): Activity(0.0, 9)}, NOW)
        daemons.report_activity(session, "leader", {("acme", "web"): Activity(0.0, 1)}, NOW)
        found = daemons.activity_elsewhere(session, "leader", NOW + timedelta(seconds=1))
    assert found == {
        ("acme", "web"): Activity(6.0, 2),
        ("acme", "api"): Activity(None, 0),
    }  # not its own, nor the gone's
    assert daemons.merged(found[("acme", "web")], Activity(None, 1)) == Activity(6.0, 3)
    with db.session(engine) as session:
        daemons.report_activity(session, "c", {}, NOW)  # a report replaces the last
        assert daemons.activity_elsewhere(session, "leader", NOW) == {("acme", "web"): Activity(30.0, 0)}


def test_images_belong_on_the_leaders_host(engine: Engine) -> None:
    with db.session(engine) as session:
        assert daemons.leader_elsewhere(session, "host2", NOW) is None  # no leader known: nothing to say
        daemons.register(session, "a", 1, NOW, "host1")
        daemons.register(session, "b", 2, NOW, "host2")
        daemons.register(session, "c", 3, NOW, "host1")
        daemons.lead(session, "a", NOW)
        found = daemons.leader_elsewhere(session, "host2", NOW)
        assert found is not None and (found.name, found.host) == ("a", "host1")
        assert "on host host1 (daemon a)" in daemons.image_store_elsewhere("builds run", found)
        assert daemons.leader_elsewhere(session, "host1", NOW) is None  # c shares a's engine
        assert daemons.leader_elsewhere(session, "host2", NOW + timedelta(minutes=1)) is None  # a is gone


def test_the_daemons_clock_is_the_databases_in_utc(engine: Engine) -> None:
    """Heartbeats are stamped and judged by one clock: PostgreSQL's, whatever the session's time zone says."""
    with db.session(engine) as session:
        if engine.dialect.name == "postgresql":
            session.execute(text("SET TIME ZONE 'Asia/Tokyo'"))
        now = db.clock(session)
    assert now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)  # one machine here: the same time


def test_an_instance_is_held_by_every_standby_alive_until_its_door_lets_go(engine: Engine) -> None:
    with db.session(engine) as session:
        for name in ("leader", "b", "c", "gone"):
            daemons.register(session, name, 1, NOW)
        daemons.heartbeat(session, "gone", 1, NOW - timedelta(minutes=5), None)  # its door is waited for no more
        assert daemons.holding(session, "leader", "i1", NOW) == {"b", "c"}
        daemons.report_drained(session, "b", {"i1", "i2"})
        assert daemons.holding(session, "leader", "i1", NOW) == {"c"}
        daemons.report_drained(session, "c", {"i1"})
        assert daemons.holding(session, "leader", "i1", NOW) == set()
        daemons.report_drained(session, "b", {"i2"})  # said again: replaces what it said
        assert daemons.holding(session, "leader", "i1", NOW) == {"b"}
        assert daemons.holding(session, "leader", "i2", NOW) == {"c"}


def test_a_daemon_with_another_key_is_refused_unless_it_is_the_only_one_there_can_be(engine: Engine) -> None:
    with db.session(engine) as session:
        assert installation.join(session, "first", "key-1") == ("first", False)
        assert installation.join(session, "second", "key-1") == ("first", False)  # the platform's id, not its own
        with pytest.raises(Invalid, match="copy secret.key"):
            installation.join(session, "second", "key-2")
        assert installation.join(session, "first", "key-2", sole=True) == ("first", True)
        assert installation.join(session, "third", "key-2") == ("first", False)
