"""Deployed apps really run: real containers on the real Docker engine, kept as the desired state says."""

import ipaddress
import json
import os
import signal
import socket
import subprocess

import httpx

from hosting.paas.subnets import TENANT_POOL
from tenants.enums import InstanceState, Isolation
from tenants.schemas import AppSpec, TenantCreate
from tests.containers import containers_of, docker, inspect, platform_id, ready, remove_everything_of, wait_for
from tests.harness import STRATA, Daemon, start_daemon

HELLO = AppSpec(image="strata/hello", replicas=3, cpu_millicores=250, memory_mib=64, health_path="/healthz")


def deploy(daemon: Daemon, tenant: str, spec: AppSpec = HELLO, app: str = "web", plan: str = "medium") -> None:
    with daemon.operator() as api:
        if tenant not in {t.name for t in api.tenants()}:
            api.create_tenant(TenantCreate(name=tenant, plan=plan))
        api.deploy(tenant, app, spec)


def test_a_deploy_runs_healthy_hardened_containers_on_loopback_ports(platform: Daemon, unique: str) -> None:
    deploy(platform, unique)
    instances = ready(platform, unique, "web", 3)

    for instance in instances:
        container = inspect(instance.container_id)
        assert {
            "strata.platform": platform_id(platform),
            "strata.tenant": unique,
            "strata.app": "web",
            "strata.revision": "1",
            "strata.instance": instance.id,
        }.items() <= container["Config"]["Labels"].items()
        host = container["HostConfig"]
        assert (host["NanoCpus"], host["Memory"], host["MemorySwap"]) == (250_000_000, 64 << 20, 64 << 20)
        assert host["PidsLimit"] == 256 and host["ReadonlyRootfs"] is True
        assert host["SecurityOpt"] == ["no-new-privileges:true"] and host["CapDrop"] == ["ALL"]
        assert not host["CapAdd"]
        assert host["NetworkMode"] == f"strata-{platform_id(platform)[:8]}-{unique}"
        [binding] = container["NetworkSettings"]["Ports"]["8080/tcp"]
        assert binding["HostIp"] == "127.0.0.1"
        assert instance.endpoint == f"127.0.0.1:{binding['HostPort']}"

        answer = httpx.get(f"http://{instance.endpoint}/").text
        assert answer.strip() == f"hello from tenant={unique} app=web revision=1 instance={instance.id}"


def test_scaling_down_removes_the_surplus(platform: Daemon, unique: str) -> None:
    deploy(platform, unique)
    ready(platform, unique, "web", 3)
    with platform.operator() as api:
        api.scale(unique, "web", 1)
    [kept] = ready(platform, unique, "web", 1)
    with platform.operator() as api:
        [local] = api.nodes()
    assert local.name == "local" and local.state == "ready" and unique in local.tenants
    assert wait_for(lambda: len(containers_of(platform_id(platform), f"strata.tenant={unique}")) == 1)
    assert httpx.get(f"http://{kept.endpoint}/healthz").status_code == 200


def test_a_crashed_instance_is_restarted_and_healthy_again(platform: Daemon, unique: str) -> None:
    deploy(platform, unique, HELLO.model_copy(update={"replicas": 1}))
    [before] = ready(platform, unique, "web", 1)

    httpx.get(f"http://{before.endpoint}/crash")

    def restarted():  # type: ignore[no-untyped-def]
        [after] = ready(platform, unique, "web", 1)
        return after if after.restarts == 1 else None

    after = wait_for(restarted, timeout=15, what="the restart")
    assert (after.id, after.container_id) == (before.id, before.container_id)
    assert httpx.get(f"http://{after.endpoint}/healthz").text == "ok\n"
    with platform.operator() as api:
        actions = [e.action for e in api.events(unique) if e.detail.get("instance") == before.id]
    assert actions[:3] == ["instance.ready", "instance.restart", "instance.crashed"]


def test_a_container_removed_behind_the_platforms_back_is_recreated(platform: Daemon, unique: str) -> None:
    deploy(platform, unique, HELLO.model_copy(update={"replicas": 2}))
    first = ready(platform, unique, "web", 2)
    docker("rm", "-f", first[0].container_id)
    second = wait_for(
        lambda: (found := ready(platform, unique, "web", 2)) and first[0].id not in {i.id for i in found} and found,
        what="a replacement",
    )
    assert first[1].id in {i.id for i in second}


def test_a_rolling_deploy_never_drops_below_n_minus_1_ready(platform: Daemon, unique: str) -> None:
    deploy(platform, unique)
    old = {i.id for i in ready(platform, unique, "web", 3)}

    deploy(platform, unique, HELLO.model_copy(update={"env": {"RELEASE": "2"}}))
    fewest_ready, seen_states = 3, []
    with platform.operator() as api:
        while True:
            instances = api.instances(unique, "web")
            ready_now = [i for i in instances if i.state == InstanceState.READY]
            fewest_ready = min(fewest_ready, len(ready_now))
            seen_states.append(sorted((i.revision, i.state.value) for i in instances))
            if len(instances) == 3 and all(i.revision == 2 and i.state == "ready" for i in instances):
                break
            assert len(seen_states) < 600, seen_states[-1]  # 60 s
            __import__("time").sleep(0.1)
    assert fewest_ready >= 2, seen_states
    assert not old & {i.id for i in instances}
    assert any(len(states) == 4 for states in seen_states)  # one new instance was added before an old went


def test_a_new_revision_that_crashes_keeps_the_old_one_serving(platform: Daemon, unique: str) -> None:
    deploy(platform, unique, HELLO.model_copy(update={"replicas": 2}))
    old = ready(platform, unique, "web", 2)
    deploy(platform, unique, HELLO.model_copy(update={"replicas": 2, "command": ["sh", "-c", "exit 7"]}))

    def crashlooping():  # type: ignore[no-untyped-def]
        with platform.operator() as api:
            found = api.instances(unique, "web")
        return [i for i in found if i.revision == 2 and i.state == InstanceState.CRASHLOOP]

    [bad] = wait_for(crashlooping, timeout=30, what="crashloop")
    assert bad.restarts >= 2
    with platform.operator() as api:
        serving = [i for i in api.instances(unique, "web") if i.revision == 1 and i.state == "ready"]
        crashes = [e for e in api.events(unique) if e.action == "instance.crashed"]
    assert {i.id for i in serving} == {i.id for i in old}
    assert crashes[0].detail["exit_code"] == 7 and crashes[0].detail["restart_in_seconds"] > 1


def test_a_published_port_nothing_listens_behind_is_not_ready(platform: Daemon, unique: str) -> None:
    """docker-proxy accepts on the published port and closes when nothing listens in the container: a TCP
    check must see that, or the front door routes requests to an instance that cannot answer them."""
    deploy(platform, unique, AppSpec(image="strata/static", replicas=1, command=["sleep", "600"]))

    def waiting():  # type: ignore[no-untyped-def]
        with platform.operator() as api:
            return [i for i in api.instances(unique, "web") if "closed at once" in (i.message or "")]

    [instance] = wait_for(waiting, timeout=30, what="a failed TCP check")
    assert instance.state != InstanceState.READY and instance.endpoint
    host, _, port = instance.endpoint.rpartition(":")
    socket.create_connection((host, int(port)), timeout=5).close()  # accepted: a connect alone proves nothing


def test_a_killed_daemon_restarted_adopts_its_containers(tmp_path, unique: str) -> None:  # type: ignore[no-untyped-def]
    daemon = start_daemon(tmp_path / "home", local_node=True)
    platform = platform_id(daemon)
    try:
        deploy(daemon, unique, HELLO.model_copy(update={"image": "strata/hello", "replicas": 2}))
        before = ready(daemon, unique, "web", 2)
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(timeout=10)

        daemon = start_daemon(tmp_path / "home", daemon.port, local_node=True)
        after = ready(daemon, unique, "web", 2)
        assert {(i.id, i.container_id, i.restarts) for i in after} == {(i.id, i.container_id, 0) for i in before}
        assert len(containers_of(platform)) == 2
        with daemon.operator() as api:
            creates = [e for e in api.events(unique) if e.action == "instance.create"]
            assert len(creates) == 2
            api.scale(unique, "web", 3)  # the adopted state is one passes can act on
        ready(daemon, unique, "web", 3)
        assert "reconcile pass failed" not in (tmp_path / "home-daemon.log").read_text()
    finally:
        daemon.stop()
        remove_everything_of(platform)


def test_deleting_an_app_leaves_no_container(platform: Daemon, unique: str) -> None:
    deploy(platform, unique, HELLO.model_copy(update={"replicas": 2}))
    ready(platform, unique, "web", 2)
    with platform.operator() as api:
        api.delete_app(unique, "web")
    wait_for(lambda: containers_of(platform_id(platform), f"strata.tenant={unique}") == [], what="removal")


def test_suspending_a_tenant_stops_its_apps_and_resuming_brings_them_back(platform: Daemon, unique: str) -> None:
    deploy(platform, unique, HELLO.model_copy(update={"replicas": 1}))
    ready(platform, unique, "web", 1)
    result = subprocess.run([*STRATA, "tenants", "suspend", unique], env=platform.env, capture_output=True)
    assert result.returncode == 0
    wait_for(lambda: containers_of(platform_id(platform), f"strata.tenant={unique}") == [], what="stop")
    subprocess.run([*STRATA, "tenants", "resume", unique], env=platform.env, check=True, capture_output=True)
    ready(platform, unique, "web", 1)


def test_tenants_networks_keep_them_apart(platform: Daemon, unique: str) -> None:
    a, b = unique, f"{unique}-b"
    deploy(platform, a, HELLO.model_copy(update={"replicas": 2, "env": {"SECRET": "a-only"}}))
    deploy(platform, b, HELLO.model_copy(update={"replicas": 1, "env": {"SECRET": "b-only"}}))
    a1, a2 = ready(platform, a, "web", 2)
    [b1] = ready(platform, b, "web", 1)
    name = {i.id: inspect(i.container_id)["Name"].lstrip("/") for i in (a1, a2, b1)}
    networks = {i.id: set(inspect(i.container_id)["NetworkSettings"]["Networks"]) for i in (a1, a2, b1)}
    assert networks[a1.id] == networks[a2.id] and not networks[a1.id] & networks[b1.id]
    subnets = {i.id: _subnet(next(iter(networks[i.id]))) for i in (a1, b1)}
    assert subnets[a1.id] != subnets[b1.id]
    assert all(ipaddress.ip_network(s).subnet_of(TENANT_POOL) for s in subnets.values())  # not Docker's pools

    # Docker's DNS (on the container's own loopback) knows a tenant's containers only inside its network.
    def lookup(instance, target):  # type: ignore[no-untyped-def]
        return subprocess.run(
            ["docker", "exec", instance.container_id, "nslookup", name[target.id], "127.0.0.11"],
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert lookup(a1, a2).returncode == 0
    assert lookup(a1, b1).returncode != 0
    assert "b-only" not in docker("exec", a1.container_id, "env")


def _subnet(network: str) -> str:
    return json.loads(docker("network", "inspect", network))[0]["IPAM"]["Config"][0]["Subnet"]


def test_logs_stream_each_instance_prefixed(platform: Daemon, unique: str) -> None:
    deploy(platform, unique, HELLO.model_copy(update={"replicas": 2}))
    instances = ready(platform, unique, "web", 2)
    result = subprocess.run(
        [*STRATA, "apps", "logs", f"{unique}/web", "--since", "5m"],
        env=platform.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    for instance in instances:
        assert f"[{instance.id}] hello: tenant={unique} app=web revision=1 instance={instance.id}" in result.stdout


def test_images_load_an_archive_onto_the_nodes(platform: Daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    archive = tmp_path / "static.tar"
    docker("tag", "strata/static:latest", f"strata/static:loaded-{os.getpid()}")
    docker("save", "-o", str(archive), f"strata/static:loaded-{os.getpid()}")
    docker("rmi", f"strata/static:loaded-{os.getpid()}")
    result = subprocess.run(
        [*STRATA, "images", "load", str(archive)], env=platform.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert f"strata/static:loaded-{os.getpid()}" in result.stdout
    docker("rmi", f"strata/static:loaded-{os.getpid()}")


def test_an_app_whose_image_is_missing_is_reported_not_retried_in_a_hot_loop(platform: Daemon, unique: str) -> None:
    """An image the platform lacks is pulled from its registry (here one on loopback that does not answer): the
    failure names its reason, and is retried with backoff."""
    absent = "127.0.0.1:1/team/absent:1"
    deploy(platform, unique, AppSpec(image=absent, replicas=1))

    def failures():  # type: ignore[no-untyped-def]
        with platform.operator() as api:
            return [e for e in api.events(unique) if e.action == "image.pull_failed"]

    [first, *_] = wait_for(failures, what="the failure event")
    assert absent in first.detail["message"] and first.detail["reason"] == "Unreachable"
    __import__("time").sleep(2)
    assert len(failures()) <= 3  # backing off: 1 s, 2 s, 4 s ...

    # `apps show` and `apps list` say why, not only the events.
    shown = platform.cli("apps", "show", f"{unique}/web")
    assert shown.returncode == 0, shown.stderr
    [status] = [line for line in shown.stdout.splitlines() if line.startswith("status:")]
    assert "ImagePullBackOff: Unreachable" in status and absent in status and "again in" in status
    listed = platform.cli("apps", "list", unique)
    assert "0/1" in listed.stdout and "ImagePullBackOff" in listed.stdout


def test_a_platform_image_the_store_lacks_is_never_pulled_and_says_how_to_get_it(platform: Daemon, unique: str) -> None:
    """`strata/...` names the platform's own images: pulling one from Docker Hub could bring anyone's image."""
    deploy(platform, unique, AppSpec(image="strata/absent", replicas=1))

    def problem() -> str | None:
        with platform.operator() as api:
            return api.app(unique, "web").problem

    text = wait_for(problem, what="the app's problem")
    assert "strata/absent" in text and "platform's image" in text and "strata images" in text
    with platform.operator() as api:
        assert not [e for e in api.events(unique) if e.action.startswith("image.pull")]


def test_an_instance_no_node_fits_stays_pending_saying_why(platform: Daemon, unique: str) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium", isolation=Isolation.DEDICATED))
    deploy(platform, unique, HELLO.model_copy(update={"replicas": 1}))  # the only node is shared

    def unschedulable():  # type: ignore[no-untyped-def]
        with platform.operator() as api:
            return [e for e in api.events(unique) if e.action == "instance.unschedulable"]

    [event] = wait_for(unschedulable, what="the unschedulable event")
    hint = f"tenant {unique} is dedicated and has no VM node: add one with `strata nodes add NAME --tenant {unique}`"
    assert event.detail["reason"] == f"no node fits: {hint}"
    assert not containers_of(platform_id(platform), f"strata.tenant={unique}")
    with platform.operator() as api:
        assert api.app(unique, "web").reason() == f"cannot be placed: no node fits: {hint}"


def test_a_crashing_instance_says_its_exit_code_and_last_output(platform: Daemon, unique: str) -> None:
    crashing = ["sh", "-c", "echo starting >&2; echo 'fatal: no DATABASE_URL' >&2; exit 3"]  # one stream: in order
    deploy(platform, unique, HELLO.model_copy(update={"replicas": 1, "command": crashing}))

    def explained():  # type: ignore[no-untyped-def]
        with platform.operator() as api:
            instances = api.instances(unique, "web")
        message = instances[0].message if instances else None
        return message if message and message.startswith("exited") else None

    message = wait_for(explained, timeout=15, what="the crash's message")
    assert message.startswith("exited with code 3, ") and "last output: starting | fatal: no DATABASE_URL" in message
    with platform.operator() as api:
        reason = api.app(unique, "web").reason()  # the first instance that is not ready speaks for the app
    assert reason and reason.startswith("instance ") and "exited with code 3" in reason


def test_a_deleted_tenants_network_is_removed_from_the_engine(platform: Daemon, unique: str) -> None:
    deploy(platform, unique, HELLO.model_copy(update={"replicas": 1}))
    [instance] = ready(platform, unique, "web", 1)
    [network] = inspect(instance.container_id)["NetworkSettings"]["Networks"]
    assert platform.cli("tenants", "delete", unique, "--yes").returncode == 0

    def gone() -> bool:
        return not docker("network", "ls", "-q", "--filter", f"name=^{network}$").split()

    wait_for(gone, timeout=20, what=f"network {network} to be removed")
