"""The SSH server with a real OpenSSH client: commands, refusals, and the console on a terminal (tmux)."""

import csv
import io
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from websockets.exceptions import InvalidStatus

from tenants.enums import InstanceState, Role
from tenants.schemas import AppSpec, InstanceRead, KeyCreate, ServiceCreate, TenantCreate, TokenCreate
from tenants.services import USERNAME
from tests.api.test_usage import DECEMBER, meter
from tests.containers import docker, inspect, ready, wait_for
from tests.harness import Daemon
from tui.shell import open_socket
from tui.ssh.commands import PSQL_COMMAND

SSH_OPTIONS = [
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "BatchMode=yes",
    "-o",
    "IdentitiesOnly=yes",
]


def keypair(directory: Path, name: str) -> Path:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    return key


def register(daemon: Daemon, key: Path, role: Role, tenant: str | None = None) -> None:
    with daemon.operator() as api:
        api.add_key(KeyCreate(public_key=Path(f"{key}.pub").read_text(), role=role, tenant=tenant))


def ssh_command(daemon: Daemon, key: Path, user: str, *command: str, tty: bool = False) -> list[str]:
    host, port = daemon.ssh.split(":")
    return ["ssh", *(["-tt"] if tty else []), "-p", port, "-i", str(key), *SSH_OPTIONS, f"{user}@{host}", *command]


def ssh(daemon: Daemon, key: Path, user: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(ssh_command(daemon, key, user, *command), capture_output=True, text=True, timeout=60)


def children(pid: int) -> list[str]:
    """The command lines of the processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if parent == pid:
                found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
    return found


@pytest.fixture
def acme(daemon: Daemon, unique: str, tmp_path: Path) -> tuple[str, Path]:
    """A tenant with an app and a key of its own."""
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
        api.deploy(unique, "web", AppSpec(image="strata/hello"))
    key = keypair(tmp_path, "tenant")
    register(daemon, key, Role.TENANT, unique)
    return unique, key


def test_tenant_commands_run_scoped_with_the_clis_exit_codes(daemon: Daemon, acme: tuple[str, Path]) -> None:
    tenant, key = acme
    listed = ssh(daemon, key, tenant, "apps")
    assert listed.returncode == 0 and f"{tenant}/web" in listed.stdout
    assert ssh(daemon, key, tenant, "scale", "web", "2").returncode == 0
    refused = ssh(daemon, key, tenant, "scale", "web", "99")
    assert refused.returncode == 1 and "instances quota exceeded" in refused.stderr
    other = ssh(daemon, key, tenant, "scale", "someone-else/web", "0")
    assert other.returncode == 2 and "name the app alone" in other.stderr
    unknown = ssh(daemon, key, tenant, "rm", "-rf", "/")
    assert unknown.returncode == 2 and "unknown command" in unknown.stderr
    with daemon.operator() as api:
        assert api.app(tenant, "web").replicas == 2
        sessions = [e for e in api.events(tenant) if e.action == "ssh.session"]
        assert {e.detail["exit_code"] for e in sessions} == {0, 1, 2}
        assert not [t for t in api.tokens(tenant) if t.name.startswith("ssh:")]  # each session's token is gone


def test_a_tenant_adds_a_registry_login_with_the_password_on_stdin(daemon: Daemon, acme: tuple[str, Path]) -> None:
    tenant, key = acme
    add = ["registries", "add", "registry.example.com:5000", "--username", "ci", "--password-stdin"]
    added = subprocess.run(
        ssh_command(daemon, key, tenant, *add), input="pa55-over-ssh\n", capture_output=True, text=True, timeout=60
    )
    assert added.returncode == 0, added.stderr
    listed = ssh(daemon, key, tenant, "registries")
    assert "registry.example.com:5000" in listed.stdout and "pa55-over-ssh" not in listed.stdout
    on_the_line = ssh(daemon, key, tenant, "registries", "add", "r.example.com", "--username", "u", "--password", "x")
    assert on_the_line.returncode == 2 and "--password-stdin" in on_the_line.stderr
    assert ssh(daemon, key, tenant, "images").returncode == 0
    assert ssh(daemon, key, tenant, "registries", "remove", "registry.example.com:5000").returncode == 0
    assert ssh(daemon, key, tenant, "registries", "remove", "registry.example.com:5000").returncode == 1


def test_a_password_typed_on_the_command_line_is_refused_and_never_audited(
    daemon: Daemon, acme: tuple[str, Path]
) -> None:
    tenant, key = acme
    secret = f"typed-{uuid.uuid4().hex}"
    for typed in (["-p", secret], [f"--password={secret}"], ["--password", f"'two {secret}'"], [f"-p{secret}"]):
        refused = ssh(daemon, key, tenant, "registries", "add", "r.example.com", "-u", "me", *typed)
        assert refused.returncode == 2 and "--password-stdin" in refused.stderr
    with daemon.operator() as api:
        sessions = [e for e in api.events(tenant) if e.action == "ssh.session"]
        everything = json.dumps([e.model_dump(mode="json") for e in api.events(limit=500)])
    assert [e.detail["command"] for e in sessions][::-1] == [
        "registries add r.example.com -u me -p [redacted]",
        "registries add r.example.com -u me --password=[redacted]",
        "registries add r.example.com -u me --password [redacted]",
        "registries add r.example.com -u me -p[redacted]",
    ]
    assert secret not in everything
    daemon_log = (daemon.home.parent / f"{daemon.home.name}-daemon.log").read_text()
    assert secret not in daemon_log


def test_refused_logins_are_refused_and_audited(daemon: Daemon, acme: tuple[str, Path], tmp_path: Path) -> None:
    tenant, key = acme
    stranger = keypair(tmp_path, "stranger")
    for who, user in ((stranger, tenant), (key, "admin"), (key, f"{tenant}-other"), (stranger, "admin")):
        refused = ssh(daemon, who, user, "apps")
        assert refused.returncode == 255 and "Permission denied" in refused.stderr
    host, port = daemon.ssh.split(":")
    password = subprocess.run(
        [
            "ssh",
            "-p",
            port,
            *SSH_OPTIONS,
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            f"{tenant}@{host}",
            "apps",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert password.returncode == 255
    with daemon.operator() as api:
        reasons = [
            e.detail["reason"]
            for e in api.events(limit=200)
            if e.action == "ssh.refused" and e.detail["user"] in (tenant, "admin", f"{tenant}-other")
        ]
    assert "unknown key" in reasons and "not this user's key" in reasons


def test_an_operator_names_any_tenant(daemon: Daemon, acme: tuple[str, Path], tmp_path: Path) -> None:
    tenant, _ = acme
    key = keypair(tmp_path, "operator")
    register(daemon, key, Role.OPERATOR)
    listed = ssh(daemon, key, "admin", "apps", tenant)
    assert listed.returncode == 0 and f"{tenant}/web" in listed.stdout


def test_usage_over_ssh_is_the_sessions_tenants_and_any_tenants_for_an_operator(
    daemon: Daemon, acme: tuple[str, Path], tmp_path: Path
) -> None:
    tenant, key = acme
    other = f"{tenant}-b"
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=other))
    meter(daemon, tenant, "web", DECEMBER, 2.5, 3)
    meter(daemon, other, "api", DECEMBER, 7.0, 1)
    operator = keypair(tmp_path, "operator")
    register(daemon, operator, Role.OPERATOR)

    own = ssh(daemon, key, tenant, "usage", "--since", "2026-12-01", "--csv")
    assert own.returncode == 0, own.stderr
    rows = list(csv.DictReader(io.StringIO(own.stdout)))
    assert [(r["tenant"], r["app"], float(r["cpu_seconds"]), int(r["requests"])) for r in rows] == [
        (tenant, "web", 2.5, 3)
    ]
    refused = ssh(daemon, key, tenant, "usage", "--tenant", other)
    assert refused.returncode == 2 and f"your usage is {tenant}'s alone" in refused.stderr and not refused.stdout
    bad_day = ssh(daemon, key, tenant, "usage", "--since", "yesterday")
    assert bad_day.returncode == 2 and "--since" in bad_day.stderr  # the CLI's own refusal
    named = ssh(daemon, operator, "admin", "usage", other, "--since=2026-12-01", "--json")
    assert named.returncode == 0, named.stderr
    assert [(line["tenant"], line["cpu_seconds"]) for line in json.loads(named.stdout)["lines"]] == [(other, 7.0)]
    everyone = ssh(daemon, operator, "admin", "usage", "--since", "2026-12-01", "--csv")
    assert {tenant, other} <= {r["tenant"] for r in csv.DictReader(io.StringIO(everyone.stdout))}


class Terminal:
    """An interactive ssh in a tmux window: type keys, read the screen, resize."""

    def __init__(
        self, daemon: Daemon, key: Path, user: str, width: int = 120, height: int = 30, command: str = ""
    ) -> None:
        self.name = f"strata-{uuid.uuid4().hex[:8]}"
        host, port = daemon.ssh.split(":")
        command = " ".join(["ssh", "-t", "-p", port, "-i", str(key), *SSH_OPTIONS, f"{user}@{host}", command])
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                self.name,
                "-x",
                str(width),
                "-y",
                str(height),
                f"{command}; echo SESSION-ENDED $?; sleep 30",
            ],
            check=True,
        )

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True).stdout

    def wait_for(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in (screen := self.screen()):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def resize(self, width: int, height: int) -> None:
        subprocess.run(["tmux", "resize-window", "-t", self.name, "-x", str(width), "-y", str(height)], check=True)

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by make install")
def test_the_console_over_ssh_renders_reacts_and_resizes(
    daemon: Daemon, acme: tuple[str, Path], tmp_path: Path
) -> None:
    tenant, tenant_key = acme
    key = keypair(tmp_path, "operator")
    register(daemon, key, Role.OPERATOR)
    operator, scoped = Terminal(daemon, key, "admin", 120, 30), Terminal(daemon, tenant_key, tenant, 100, 30)
    try:
        assert "TENANT" in operator.wait_for("docker engines")  # two sessions at once
        scoped.wait_for(tenant)
        time.sleep(1)
        rows = [line.strip("│ ").split() for line in scoped.screen().splitlines()]  # inside the table's border
        header = next(i for i, row in enumerate(rows) if row[:1] == ["TENANT"])
        assert [row[0] for row in rows[header + 1 :] if row][:1] == [tenant]  # its own tenant heads the table
        assert "docker engines" not in scoped.screen()  # a tenant's console offers no operator figures

        operator.keys(":")
        operator.wait_for("tenants | nodes")  # the command prompt is up
        operator.keys(*"events", "Enter")
        operator.wait_for("ACTION")
        before = operator.screen().splitlines()[0]
        operator.resize(160, 30)
        deadline = time.monotonic() + 10
        while operator.screen().splitlines()[0] == before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert operator.screen().splitlines()[0] != before  # the header re-centred: SIGWINCH reached it

        operator.keys("q")
        operator.wait_for("SESSION-ENDED 0")
    finally:
        operator.close()
        scoped.close()
    with daemon.operator() as api:
        consoles = [e for e in api.events(limit=300) if e.action == "ssh.session" and e.detail["command"] == "console"]
    assert any(e.detail["exit_code"] == 0 for e in consoles)


@pytest.fixture
def running(platform: Daemon, unique: str, tmp_path: Path) -> tuple[str, Path, InstanceRead]:
    """A tenant of the local-node platform with one ready instance and a key of its own."""
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
        api.deploy(unique, "web", AppSpec(image="strata/hello", memory_mib=64))
    [instance] = ready(platform, unique, "web", 1)
    key = keypair(tmp_path, "tenant")
    register(platform, key, Role.TENANT, unique)
    return unique, key, instance


def test_a_shell_command_runs_in_the_tenants_container(platform: Daemon, running) -> None:  # type: ignore[no-untyped-def]
    tenant, key, instance = running
    hostname = inspect(instance.container_id)["Config"]["Hostname"]
    assert ssh(platform, key, tenant, "shell", "web", "--", "hostname").stdout.strip() == hostname
    assert ssh(platform, key, tenant, 'shell web -- sh -c "exit 7"').returncode == 7
    host, port = platform.ssh.split(":")
    piped = subprocess.run(
        ["ssh", "-p", port, "-i", str(key), *SSH_OPTIONS, f"{tenant}@{host}", "shell", "web", "--", "cat"],
        input="through stdin\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.stdout == "through stdin\n" and piped.returncode == 0
    assert ssh(platform, key, tenant, "shell", "nope").returncode == 1


def test_a_tenant_never_reaches_another_tenants_container(platform: Daemon, running, unique: str) -> None:  # type: ignore[no-untyped-def]
    tenant, key, instance = running
    other = f"{unique}-other"
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=other))
        api.deploy(other, "web", AppSpec(image="strata/hello", memory_mib=64))
        token = api.create_token(TokenCreate(role=Role.TENANT, tenant=tenant)).token
    [theirs] = ready(platform, other, "web", 1)
    assert ssh(platform, key, tenant, "shell", f"{other}/web").returncode == 2
    with platform.client(token) as client:
        target = client.exec_target(other, "web", theirs.id, ["hostname"], tty=False)
    with pytest.raises(InvalidStatus):  # refused before the socket opens
        open_socket(target).close()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by make install")
def test_an_interactive_shell_returns_its_exit_code_and_a_dropped_client_leaves_nothing_behind(
    platform: Daemon, running: tuple[str, Path, InstanceRead]
) -> None:
    tenant, key, instance = running
    shell = Terminal(platform, key, tenant, command="shell web")
    try:
        shell.wait_for("$")
        shell.keys("hostname", "Enter")
        shell.wait_for(inspect(instance.container_id)["Config"]["Hostname"])
        shell.keys("exit 7", "Enter")
        shell.wait_for("SESSION-ENDED 7")
    finally:
        shell.close()

    dropped = Terminal(platform, key, tenant, command="shell web -- sleep 1000")
    try:
        deadline = time.monotonic() + 20
        while "sleep 1000" not in docker("top", instance.container_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "sleep 1000" in docker("top", instance.container_id)
    finally:
        dropped.close()  # the client goes away
    deadline = time.monotonic() + 20
    while "sleep 1000" in docker("top", instance.container_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "sleep 1000" not in docker("top", instance.container_id)


def test_a_shell_in_an_instance_that_does_not_exist_names_the_instances(platform: Daemon, running) -> None:  # type: ignore[no-untyped-def]
    tenant, key, instance = running
    refused = ssh(platform, key, tenant, "shell", "web", "NOSUCH", "--", "true")
    assert refused.returncode == 1
    assert f"no instance NOSUCH of web; its instances are: {instance.id}" in refused.stderr


@pytest.mark.parametrize("delay", [0, 2], ids=["before-the-shell-is-ready", "once-it-runs"])
def test_piped_input_to_a_terminal_shell_is_kept_and_its_exit_code_returned(
    platform: Daemon, running: tuple[str, Path, InstanceRead], delay: int
) -> None:
    tenant, key, _ = running
    command = " ".join(ssh_command(platform, key, tenant, "shell", "web", tty=True))
    piped = subprocess.run(
        ["sh", "-c", f"(sleep {delay}; printf 'echo h\"\"i; exit 3\\n') | {command}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "hi" in [line.strip() for line in piped.stdout.splitlines()], piped.stdout
    assert piped.returncode == 3, piped.stderr


@pytest.mark.parametrize("stdin", [subprocess.DEVNULL, subprocess.PIPE], ids=["input-ended", "input-open"])
def test_a_dropped_client_ends_its_commands_process_token_and_session(platform: Daemon, running, stdin: int) -> None:  # type: ignore[no-untyped-def]
    tenant, key, _ = running

    def follower() -> list[str]:
        return [c for c in children(platform.process.pid) if f"apps logs {tenant}/web --follow" in c]

    def session_tokens() -> list[str]:
        with platform.operator() as api:
            return [t.name for t in api.tokens(tenant) if t.name.startswith("ssh:")]

    client = subprocess.Popen(
        ssh_command(platform, key, tenant, "logs", "web", "-f"),
        stdin=stdin,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(follower, 20, "the session's `strata apps logs --follow`")
        assert session_tokens()
        time.sleep(2)  # as `timeout 3 ssh ...`: a client without input has sent its EOF long before it goes
    finally:
        client.kill()  # the client goes away, as `timeout 3 ssh ...` makes it
        client.wait()
    wait_for(lambda: not follower(), 5, "the session's command to end")
    wait_for(lambda: not session_tokens(), 5, "the session's token to be revoked")
    with platform.operator() as api:
        sessions = [e for e in api.events(tenant) if e.action == "ssh.session"]
    assert [e.detail["command"] for e in sessions] == ["logs web -f"]


def test_a_session_whose_token_was_revoked_meanwhile_still_ends_audited(platform: Daemon, running) -> None:  # type: ignore[no-untyped-def]
    tenant, key, _ = running
    client = subprocess.Popen(
        ssh_command(platform, key, tenant, "logs", "web", "-f"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        with platform.operator() as api:
            [token] = wait_for(lambda: [t for t in api.tokens(tenant) if t.name.startswith("ssh:")], 20, "a token")
            api.revoke_token(token.id)  # an operator revokes it; its session ends with the client
            other = api.create_token(TokenCreate(role=Role.TENANT, tenant=tenant, name="ci"))
    finally:
        client.kill()
        client.wait()
    with platform.operator() as api:
        wait_for(lambda: [e for e in api.events(tenant) if e.action == "ssh.session"], 5, "the session's event")
    with platform.client(other.token) as mine:
        assert mine.app(tenant, "web").name == "web"  # ending the session revoked only its own token


def app_psql(endpoint: str, url: str, sql: str) -> str:
    """What `sql` prints run by psql on this host with the app's DATABASE_URL, through the service's port on
    127.0.0.1: as the bound app sees the database."""
    parts = urlsplit(url)
    local = parts._replace(netloc=f"{parts.username}:{parts.password}@{endpoint}").geturl()
    done = subprocess.run(["psql", local, "-XAtc", sql], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


Database = tuple[str, Path, InstanceRead, str]  # a tenant, its key, its service db's instance, its app's DATABASE_URL


@pytest.fixture
def database(platform: Daemon, unique: str, tmp_path: Path) -> Database:
    """A tenant of the local-node platform with a key of its own and its service db, ready and bound to its app
    web: the tenant, its key, db's instance, the DATABASE_URL web got."""
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="small"))
        api.create_service(unique, ServiceCreate(name="db", size_mib=64))  # the machine's first builds the image
        api.deploy(unique, "web", AppSpec(image="strata/static", memory_mib=32, cpu_millicores=100))
        api.bind_service(unique, "db", "web")
    [web] = ready(platform, unique, "web", 1, revision=2)
    url = docker("exec", web.container_id, "sh", "-c", "echo $DATABASE_URL").strip()

    def db_ready() -> list[InstanceRead]:
        with platform.operator() as api:
            return [i for i in api.instances(unique, "db") if i.state == InstanceState.READY]

    [db] = wait_for(db_ready, 600, "the database ready")
    key = keypair(tmp_path, "tenant")
    register(platform, key, Role.TENANT, unique)
    return unique, key, db, url


def test_psql_runs_a_piped_script_in_the_services_database_as_the_bound_apps_role(
    platform: Daemon, database: Database, tmp_path: Path
) -> None:
    tenant, key, db, url = database
    script = "create table t (x int); insert into t values (42); select x from t"
    ran = subprocess.run(
        ssh_command(platform, key, tenant, "psql", "db"), input=script, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert "42" in [line.strip() for line in ran.stdout.splitlines()], ran.stdout

    assert db.endpoint is not None  # the bound app, with its own credentials: the table is its role's
    assert app_psql(db.endpoint, url, "select tableowner from pg_tables where tablename = 't'") == USERNAME
    app_psql(db.endpoint, url, "insert into t values (43)")  # it writes to it, too
    assert app_psql(db.endpoint, url, "select sum(x) from t") == "85"

    failing = subprocess.run(
        ssh_command(platform, key, tenant, "psql", "db"),
        input="\\set ON_ERROR_STOP on\nselect 1 / 0;\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failing.returncode == 3 and "division by zero" in failing.stderr  # psql's own exit code

    operator = keypair(tmp_path, "operator")
    register(platform, operator, Role.OPERATOR)
    named = subprocess.run(
        ssh_command(platform, operator, "admin", "psql", f"{tenant}/db"),
        input="select sum(x) from t",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert named.returncode == 0 and "85" in named.stdout.split(), named.stderr
    with platform.operator() as api:
        events = api.events(tenant, limit=300)
    sessions = [(e.detail["command"], e.detail["exit_code"]) for e in events if e.action == "ssh.session"]
    assert sorted(sessions) == [("psql db", 0), ("psql db", 3)]  # the operator's is its own (no tenant's)
    execs = [e.detail for e in events if e.action == "instance.exec"]
    assert [(e["app"], e["instance"], e["command"]) for e in execs] == [("db", db.id, PSQL_COMMAND)] * 3


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by make install")
def test_psql_with_a_terminal_is_psqls_prompt(platform: Daemon, database: Database) -> None:
    tenant, key, _, _ = database
    prompt = Terminal(platform, key, tenant, command="psql db")
    try:
        prompt.wait_for("app=>")
        prompt.keys("select 6 * 7 as answer \\g", "Enter")  # a word ending in ; would be a tmux separator
        prompt.wait_for("42")
        prompt.keys("\\q", "Enter")
        screen = prompt.wait_for("SESSION-ENDED 0")
    finally:
        prompt.close()
    assert "could not save history" not in screen


def test_psql_opens_only_a_service_of_the_sessions_tenant(platform: Daemon, unique: str, tmp_path: Path) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="small"))
        api.create_service(unique, ServiceCreate(name="db", size_mib=64))
        api.deploy(unique, "web", AppSpec(image="strata/static", memory_mib=32, cpu_millicores=100))
        api.create_tenant(TenantCreate(name=f"{unique}-other"))
    key, other = keypair(tmp_path, "tenant"), keypair(tmp_path, "other")
    register(platform, key, Role.TENANT, unique)
    register(platform, other, Role.TENANT, f"{unique}-other")

    web = ssh(platform, key, unique, "psql", "web")
    assert web.returncode == 1 and web.stderr == f"error: {unique} has no service named web; its services are: db\n"
    stranger = ssh(platform, other, f"{unique}-other", "psql", "db")
    assert stranger.returncode == 1
    assert stranger.stderr == f"error: {unique}-other has no service named db; it has none\n"
    assert ssh(platform, other, f"{unique}-other", "psql", f"{unique}/db").returncode == 2
    with platform.operator() as api:
        assert not [e for e in api.events(unique, limit=300) if e.action == "instance.exec"]  # nothing ran
