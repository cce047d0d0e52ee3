"""The daemon killed (SIGKILL) in the middle of a rolling deploy and started again: the deploy completes from
the database and the containers' labels, with no duplicate or orphaned container and nothing lost."""

import signal
from pathlib import Path

from tenants.enums import InstanceState, Role
from tenants.schemas import InstanceRead, KeyCreate
from tests.containers import containers_of, platform_id, ready, remove_everything_of, wait_for
from tests.harness import Daemon, start_daemon
from tests.paas.test_reconciler import HELLO, deploy

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b"


def test_a_daemon_killed_mid_deploy_finishes_the_deploy_after_a_restart(tmp_path: Path, unique: str) -> None:
    home = tmp_path / "home"
    daemon = start_daemon(home, local_node=True)
    platform = platform_id(daemon)
    try:
        deploy(daemon, unique, HELLO.model_copy(update={"replicas": 3}))
        ready(daemon, unique, "web", 3)
        with daemon.operator() as api:
            api.add_key(KeyCreate(public_key=KEY, role=Role.TENANT, tenant=unique))
            api.deploy(unique, "web", HELLO.model_copy(update={"replicas": 3, "env": {"GREETING": "v2"}}))
        # Killed once the roll has begun: a container of revision 2 runs beside those of revision 1.
        wait_for(lambda: containers_of(platform, "strata.revision=2"), what="the roll to begin")
        events = _event_ids(daemon)
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(timeout=10)

        daemon = start_daemon(home, daemon.port, local_node=True)
        wait_for(lambda: _rolled(daemon, unique), timeout=90, what="revision 2 on 3 ready instances")
        assert len(containers_of(platform)) == 3  # no duplicate, and no orphan of revision 1
        assert containers_of(platform, "strata.revision=1") == []
        with daemon.operator() as api:
            assert [key.tenant for key in api.keys(unique)] == [unique]  # what was written before is all there
            assert api.app(unique, "web").revision == 2
        assert events <= _event_ids(daemon)
    finally:
        daemon.stop()
        remove_everything_of(platform)


def _rolled(daemon: Daemon, tenant: str) -> list[InstanceRead] | None:
    with daemon.operator() as api:
        found = api.instances(tenant, "web")
    done = len(found) == 3 and all(i.revision == 2 and i.state == InstanceState.READY for i in found)
    return found if done else None


def _event_ids(daemon: Daemon) -> set[int]:
    with daemon.operator() as api:
        return {event.id for event in api.events(limit=1000)}
