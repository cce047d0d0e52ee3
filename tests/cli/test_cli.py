"""The `strata` CLI run as a user runs it: a subprocess against a real daemon."""

import json
import os
import subprocess
from pathlib import Path

from tests.harness import STRATA, Daemon


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_tenants_create_list_show_and_json(daemon: Daemon, unique: str) -> None:
    assert f"name:      {unique}" in ok(daemon.cli("tenants", "create", unique, "--plan", "medium"))
    listed = json.loads(ok(daemon.cli("tenants", "list", "--json")))
    mine = next(t for t in listed if t["name"] == unique)
    assert (mine["plan"]["name"], mine["isolation"], mine["status"]) == ("medium", "shared", "active")
    table = ok(daemon.cli("tenants", "list"))
    assert table.splitlines()[0].split()[:4] == ["NAME", "PLAN", "ISOLATION", "STATUS"]
    assert json.loads(ok(daemon.cli("tenants", "show", unique, "--json")))["usage"]["apps"] == 0


def test_apps_deploy_keeps_what_is_not_given_and_counts_revisions(daemon: Daemon, unique: str) -> None:
    ok(daemon.cli("tenants", "create", unique))
    ref = f"{unique}/web"
    created = ok(
        daemon.cli(
            "apps",
            "deploy",
            ref,
            "--image",
            "strata/hello",
            "--replicas",
            "2",
            "--cpu",
            "0.5",
            "--memory",
            "64M",
            "--env",
            "GREETING=hi there",
            "--health",
            "/healthz",
            "--command",
            "httpd -f -p 8080",
            "--detach",  # this daemon has no node: the rollout would never end
        )
    )
    assert created.strip() == f"created {ref} revision 1, 2 replica(s) of strata/hello"
    assert "unchanged" in ok(daemon.cli("apps", "deploy", ref, "--replicas", "3"))
    assert "revision 2" in ok(daemon.cli("apps", "deploy", ref, "--env", "MODE=fast", "--detach"))

    app = json.loads(ok(daemon.cli("apps", "show", ref, "--json")))
    assert app["replicas"] == 3 and app["cpu_millicores"] == 500 and app["memory_mib"] == 64
    assert app["env"] == {"GREETING": "hi there", "MODE": "fast"}
    assert app["command"] == ["httpd", "-f", "-p", "8080"] and app["health_path"] == "/healthz"

    assert "scaled" in ok(daemon.cli("apps", "scale", ref, "1"))
    assert "revision 3" in ok(daemon.cli("apps", "restart", ref))
    assert [a["name"] for a in json.loads(ok(daemon.cli("apps", "list", unique, "--json")))] == ["web"]


def test_refusals_go_to_stderr_with_a_nonzero_exit(daemon: Daemon, unique: str) -> None:
    ok(daemon.cli("tenants", "create", unique))
    quota = daemon.cli("apps", "deploy", f"{unique}/web", "--image", "strata/hello", "--replicas", "9")
    assert quota.returncode == 1 and quota.stdout == ""
    assert "instances quota exceeded: this change needs 9 in all, plan 'small' allows 6" in quota.stderr

    reserved = daemon.cli("tenants", "create", "admin")
    assert reserved.returncode != 0 and "reserved" in reserved.stderr

    new_without_image = daemon.cli("apps", "deploy", f"{unique}/api")
    assert new_without_image.returncode == 1 and "--image" in new_without_image.stderr

    bad_ref = daemon.cli("apps", "show", "no-slash")
    assert bad_ref.returncode == 2 and "TENANT/APP" in bad_ref.stderr

    bad_memory = daemon.cli("apps", "deploy", f"{unique}/web", "--image", "x", "--memory", "lots")
    assert bad_memory.returncode == 2 and "128M" in bad_memory.stderr


def test_delete_asks_for_confirmation_and_without_a_terminal_needs_yes(daemon: Daemon, unique: str) -> None:
    ok(daemon.cli("tenants", "create", unique))
    ok(daemon.cli("apps", "deploy", f"{unique}/web", "--image", "strata/hello", "--detach"))

    refused = daemon.cli("tenants", "delete", unique, stdin="y\n")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert json.loads(ok(daemon.cli("tenants", "show", unique, "--json")))["usage"]["apps"] == 1

    assert "deleted" in ok(daemon.cli("apps", "delete", f"{unique}/web", "--yes"))
    assert "deleted" in ok(daemon.cli("tenants", "delete", unique, "--yes"))
    gone = daemon.cli("tenants", "show", unique)
    assert gone.returncode == 1 and f"no tenant named '{unique}'" in gone.stderr


def test_a_tenant_token_from_the_cli_is_printed_alone_and_scoped(daemon: Daemon, unique: str) -> None:
    other = f"{unique}-b"
    ok(daemon.cli("tenants", "create", unique))
    ok(daemon.cli("tenants", "create", other))
    token = ok(daemon.cli("tokens", "create", "--tenant", unique, "--name", "ci", "--ttl", "1h"))
    assert token.count("\n") == 1 and token.startswith("st_")

    listed = json.loads(ok(daemon.cli("tenants", "list", "--json", token=token.strip())))
    assert [t["name"] for t in listed] == [unique]
    peek = daemon.cli("apps", "list", other, token=token.strip())
    assert peek.returncode == 1 and f"no tenant named '{other}'" in peek.stderr
    tokens = json.loads(ok(daemon.cli("tokens", "list", "--tenant", unique, "--json")))
    assert [(t["name"], t["expires_at"] is not None) for t in tokens] == [("ci", True)]


def test_keys_add_list_remove_with_a_real_key_file(daemon: Daemon, unique: str, tmp_path: Path) -> None:
    ok(daemon.cli("tenants", "create", unique))
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    fingerprint = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True).stdout.split()[1]

    added = json.loads(ok(daemon.cli("keys", "add", "--tenant", unique, f"{key}.pub", "--json")))
    assert added["fingerprint"] == fingerprint and added["role"] == "tenant"
    private = daemon.cli("keys", "add", "--tenant", unique, str(key))
    assert private.returncode == 1 and "not an OpenSSH public key" in private.stderr
    both = daemon.cli("keys", "add", "--operator", "--tenant", unique, f"{key}.pub")
    assert both.returncode == 2 and "either --operator or --tenant" in both.stderr

    assert fingerprint in ok(daemon.cli("keys", "list", "--tenant", unique))
    ok(daemon.cli("keys", "remove", str(added["id"])))
    assert json.loads(ok(daemon.cli("keys", "list", "--tenant", unique, "--json"))) == []


def test_events_show_who_did_what(daemon: Daemon, unique: str) -> None:
    ok(daemon.cli("tenants", "create", unique))
    ok(daemon.cli("tenants", "suspend", unique))
    ok(daemon.cli("tenants", "resume", unique))
    events = json.loads(ok(daemon.cli("events", "--tenant", unique, "--json")))
    assert [e["action"] for e in events] == ["tenant.resume", "tenant.suspend", "tenant.create"]
    assert {e["actor"] for e in events} == {"operator/bootstrap"}
    table = ok(daemon.cli("events", "--tenant", unique))
    actions = [word for line in table.splitlines()[1:] for word in line.split() if word.startswith("tenant.")]
    assert actions == ["tenant.resume", "tenant.suspend", "tenant.create"]  # newest first, as --json


def test_plans_show_every_limit(daemon: Daemon) -> None:
    header, *rows = ok(daemon.cli("plans")).splitlines()
    assert header.split() == ["NAME", "APPS", "INSTANCES", "CPU", "MEMORY", "REQ/S", "BURST", "BODY"]
    assert len(rows) == 3 and all(len(row.split()) == 8 for row in rows)


def test_without_a_daemon_the_cli_says_how_to_start_one(tmp_path: Path) -> None:
    result = subprocess.run(
        [*STRATA, "tenants", "list"],
        env={"STRATA_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "the Strata daemon is not running" in result.stderr and "strata up" in result.stderr


def test_doctor_fails_when_the_daemon_is_down(tmp_path: Path) -> None:
    result = subprocess.run(
        [*STRATA, "doctor"],
        env={"STRATA_HOME": str(tmp_path), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    [line] = [line for line in result.stdout.splitlines() if " daemon " in line]
    assert "the Strata daemon is not running" in line


def test_doctor_reports_the_machine(daemon: Daemon) -> None:
    checks = {c["name"]: c for c in json.loads(ok(daemon.cli("doctor", "--json")))}
    assert set(checks) == {"daemon", "docker", "front door", "qemu", "accel", "node image", "libvirt", "busybox-static"}
    assert checks["daemon"]["ok"] and "version" in checks["daemon"]["detail"]
    door = checks["front door"]  # the HAProxy this daemon started, by its master's pid
    assert door["ok"] and door["detail"].startswith("HAProxy 2.") and f"pid {daemon.front_door_pid()}" in door["detail"]
    assert checks["docker"]["ok"], checks["docker"]["detail"]
    assert checks["accel"]["detail"].startswith(("kvm", "tcg"))
    image = checks["node image"]  # the test daemon's home has none built
    assert not image["ok"] and "strata images node-build" in image["detail"]


def test_volumes_live_on_a_node_and_a_move_says_what_is_wrong(platform: Daemon, unique: str) -> None:
    """On a platform with the host's node: where a volume goes, and the refusals of a move, as the CLI says them.
    (Moves between the host and a VM node: tests/iaas/test_vm_nodes.py.)"""
    ok(platform.cli("tenants", "create", unique))
    ref = f"{unique}/data"
    assert ok(platform.cli("volumes", "create", ref, "--size", "32M")).strip() == f"created {ref}, 32 MiB on node local"
    nowhere = platform.cli("volumes", "move", ref, "--to", "nowhere")
    assert nowhere.returncode == 1 and "no node named 'nowhere'; see `strata nodes list`" in nowhere.stderr
    assert ok(platform.cli("volumes", "move", ref, "--to", "local")).strip() == f"{ref} is on node local already"
    missing = platform.cli("volumes", "move", ref)
    assert missing.returncode == 2 and "--to" in missing.stderr
    shown = json.loads(ok(platform.cli("volumes", "show", ref, "--json")))
    assert (shown["node"], shown["moving_to"]) == ("local", None)

    token = ok(platform.cli("tokens", "create", "--tenant", unique)).strip()
    placed = platform.cli("volumes", "create", f"{unique}/more", "--size", "16M", "--node", "local", token=token)
    assert placed.returncode == 1 and "only an operator chooses a volume's node" in placed.stderr
    moved = platform.cli("volumes", "move", ref, "--to", "local", token=token)
    assert moved.returncode == 1 and "only an operator" in moved.stderr

    dedicated = f"{unique}-d"
    ok(platform.cli("tenants", "create", dedicated, "--isolation", "dedicated"))
    none = platform.cli("volumes", "create", f"{dedicated}/data", "--size", "32M")
    assert none.returncode == 1 and f"add one (strata nodes add NAME --tenant {dedicated})" in none.stderr
    host = platform.cli("volumes", "create", f"{dedicated}/data", "--size", "32M", "--node", "local")
    assert host.returncode == 1 and "its volumes cannot live on the host" in host.stderr


def test_the_catalog_lists_what_each_template_makes_and_deploys_one(daemon: Daemon, unique: str) -> None:
    listed = ok(daemon.cli("catalog", "list"))
    assert "guestbook" in listed and "db (postgres)" in listed
    ok(daemon.cli("tenants", "create", unique))
    done = ok(daemon.cli("catalog", "deploy", unique, "hello", "--app", "greeter", "--env", "GREETING=hi"))
    assert done.strip() == f"deployed {unique}/greeter from hello"
    assert json.loads(ok(daemon.cli("apps", "show", f"{unique}/greeter", "--json")))["env"] == {"GREETING": "hi"}
    unknown = daemon.cli("catalog", "deploy", unique, "nothing-like-it")
    assert unknown.returncode == 1 and "nothing-like-it" in unknown.stderr
