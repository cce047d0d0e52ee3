"""`git push` deploys, through the SSH server, with the real git and OpenSSH clients, a real build and the gateway."""

import io
import os
import re
import signal
import subprocess
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tenants.enums import BuildState, Role
from tenants.schemas import TenantCreate
from tests.containers import wait_for
from tests.harness import Daemon
from tests.ssh.test_ssh import SSH_OPTIONS, keypair, register

DOCKERFILE = "FROM strata/static\nCOPY index.html /www/\n"
FIRST_LINE_SECONDS = 0.3  # from the pack sent to the first `remote:` line the client shows
PUSH_TIMEOUT_SECONDS = 120
LOAD_INTERVAL_SECONDS = 0.02  # ~50 requests/s: steady, and under the small plan's 100/s


@dataclass
class Push:
    """A finished `git push --progress`: its exit code, and each line of its stderr as it arrived."""

    returncode: int
    lines: list[tuple[float, str]]  # (monotonic time, line), progress updates (\r) included
    pid: int = 0  # of the git client, which leads its own process group (its ssh is in it)

    @property
    def stderr(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def remote(self) -> list[str]:
        return [line.removeprefix("remote: ").rstrip() for _, line in self.lines if line.startswith("remote: ")]

    def first_remote_line_delay(self) -> float:
        """Seconds from the pack's last byte sent ("Writing objects: 100%") to the first `remote:` line."""
        sent = max(at for at, line in self.lines if line.startswith("Writing objects: 100%"))
        return min(at for at, line in self.lines if line.startswith("remote: ")) - sent


class Checkout:
    """A working copy of an app, pushed with the real git client over OpenSSH, as the key's owner."""

    def __init__(self, directory: Path, daemon: Daemon, key: Path, user: str) -> None:
        self.directory, self.daemon, self.user = directory, daemon, user
        self.env = {
            **os.environ,
            "GIT_SSH_COMMAND": " ".join(["ssh", "-i", str(key), *SSH_OPTIONS]),
            "GIT_AUTHOR_NAME": "Ada",
            "GIT_AUTHOR_EMAIL": "ada@example.com",
            "GIT_COMMITTER_NAME": "Ada",
            "GIT_COMMITTER_EMAIL": "ada@example.com",
        }
        directory.mkdir()
        self.git("init", "--quiet", "--initial-branch=main")

    def url(self, path: str) -> str:
        host, port = self.daemon.ssh.split(":")
        return f"ssh://{self.user}@{host}:{port}/{path}"

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args], cwd=self.directory, env=self.env, capture_output=True, text=True, check=check, timeout=60
        )

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for name, text in files.items():
            (self.directory / name).write_text(text)
        self.git("add", "--all")
        self.git("commit", "--quiet", "--message", message)
        return self.git("rev-parse", "HEAD").stdout.strip()

    def push(self, path: str = "web", refspec: str = "main") -> Push:
        with self.pushing(path, refspec) as push:
            pass
        return push

    @contextmanager
    def pushing(self, path: str = "web", refspec: str = "main") -> Iterator[Push]:
        """`git push --progress` running; the Push fills as it goes, and is finished when the block ends."""
        client = subprocess.Popen(
            ["git", "push", "--progress", self.url(path), refspec],
            cwd=self.directory,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        push = Push(-1, [], client.pid)
        reader = threading.Thread(target=_read_lines, args=(client, push.lines))
        reader.start()
        try:
            yield push
        finally:
            reader.join(PUSH_TIMEOUT_SECONDS)
            push.returncode = client.wait(PUSH_TIMEOUT_SECONDS)


def _read_lines(client: subprocess.Popen[bytes], lines: list[tuple[float, str]]) -> None:
    """Each line (ended by \\n or by git's progress \\r) with the time it arrived, read unbuffered."""
    assert client.stderr is not None
    pending = b""
    while chunk := os.read(client.stderr.fileno(), 65536):
        now = time.monotonic()
        *complete, pending = re.split(rb"[\r\n]", pending + chunk)
        lines.extend((now, line.decode(errors="replace")) for line in complete if line.strip())


@dataclass
class Tenant:
    name: str
    key: Path
    checkout: Checkout

    @property
    def host(self) -> str:
        return f"web.{self.name}.localhost"


@pytest.fixture
def tenant(platform: Daemon, unique: str, tmp_path: Path) -> Tenant:
    """A tenant with no app yet, a key of its own, and a working copy holding a static site."""
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
    key = keypair(tmp_path, "tenant")
    register(platform, key, Role.TENANT, unique)
    return Tenant(unique, key, Checkout(tmp_path / "web", platform, key, unique))


def page(platform: Daemon, host: str) -> str | None:
    try:
        answer = httpx.get(f"http://{platform.gateway}/", headers={"Host": host}, timeout=10)
    except httpx.HTTPError:
        return None
    return answer.text if answer.status_code == 200 else None


def serving(platform: Daemon, host: str, text: str) -> None:
    wait_for(lambda: page(platform, host) == text, 30, f"{host} to answer {text!r}")


@contextmanager
def steady_load(platform: Daemon, host: str, text: str) -> Iterator[Counter[str]]:
    """Requests through the gateway at a steady pace, below the plan's rate limit, while the block runs: counted
    by outcome ("ok", "HTTP 502", "ReadTimeout", "wrong content")."""
    outcomes: Counter[str] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            deadline = time.monotonic() + PUSH_TIMEOUT_SECONDS  # bounded, whatever happens
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    answer = client.get(f"http://{platform.gateway}/", headers={"Host": host})
                    good = answer.status_code == 200 and answer.text == text
                    outcomes[
                        "ok" if good else f"HTTP {answer.status_code}" if answer.is_error else "wrong content"
                    ] += 1
                except httpx.HTTPError as exc:
                    outcomes[type(exc).__name__] += 1
                time.sleep(LOAD_INTERVAL_SECONDS)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        yield outcomes
    finally:
        stop.set()
        worker.join()


def test_a_push_builds_and_serves_the_app_and_each_change_is_a_new_revision(platform: Daemon, tenant: Tenant) -> None:
    started = time.monotonic()
    first = tenant.checkout.commit({"Dockerfile": DOCKERFILE, "index.html": "one\n"}, "a site")
    push = tenant.checkout.push()
    assert push.returncode == 0, push.stderr
    remote = push.remote()
    assert remote[0] == f"-----> Building web from {first[:7]}"
    assert any("COPY index.html /www/" in line for line in remote)  # the build's own output, streamed
    serving(platform, tenant.host, "one\n")
    delay = push.first_remote_line_delay()
    print(f"push to serving: {time.monotonic() - started:.1f}s; first remote line {delay * 1000:.0f} ms after the pack")
    assert delay <= FIRST_LINE_SECONDS
    with platform.operator() as api:
        app = api.app(tenant.name, "web")
    assert app.commit == first

    second = tenant.checkout.commit({"index.html": "two\n"})
    started = time.monotonic()
    assert tenant.checkout.push().returncode == 0
    serving(platform, tenant.host, "two\n")
    print(f"a one-line change, push to serving: {time.monotonic() - started:.1f}s")
    with platform.operator() as api:
        changed = api.app(tenant.name, "web")
    assert (changed.revision, changed.commit) == (app.revision + 1, second)

    again = tenant.checkout.push()
    assert again.returncode == 0 and "Everything up-to-date" in again.stderr
    aside = tenant.checkout.push(refspec="main:master")  # the same commit under another deploying branch
    assert aside.returncode == 0 and f"web is at {second[:7]} already: nothing to deploy" in aside.remote()
    with platform.operator() as api:
        assert api.app(tenant.name, "web").revision == changed.revision
        pushes = [e for e in api.events(tenant.name) if e.action == "git.push"]
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(tenant.key)], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert {e.actor for e in pushes} == {f"{tenant.name}/ssh:{fingerprint}@127.0.0.1"}  # the key that pushed
    assert [(e.detail["new"], e.detail["result"]) for e in reversed(pushes)] == [
        (first, "deployed"),
        (second, "deployed"),
        (second, "unchanged"),
    ]

    clone = tenant.checkout.directory.parent / "clone"
    cloned = tenant.checkout.git("clone", "--quiet", tenant.checkout.url("web"), str(clone))
    assert cloned.returncode == 0 and (clone / "index.html").read_text() == "two\n"


def test_a_failing_build_rejects_the_push_and_the_running_revision_keeps_serving(
    platform: Daemon, tenant: Tenant
) -> None:
    good = tenant.checkout.commit({"Dockerfile": DOCKERFILE, "index.html": "good\n"})
    assert tenant.checkout.push().returncode == 0
    serving(platform, tenant.host, "good\n")
    tenant.checkout.commit({"Dockerfile": f"{DOCKERFILE}RUN false\n"}, "a broken build")

    with steady_load(platform, tenant.host, "good\n") as outcomes:
        time.sleep(0.5)
        push = tenant.checkout.push()
        time.sleep(0.5)

    assert push.returncode != 0
    assert "pre-receive hook declined" in push.stderr
    assert any(line.startswith("error:") for line in push.remote()), push.stderr
    assert set(outcomes) == {"ok"} and outcomes["ok"] > 20, outcomes  # not one request failed
    remote_main = tenant.checkout.git("ls-remote", tenant.checkout.url("web"), "refs/heads/main").stdout
    assert remote_main.split() == [good, "refs/heads/main"]  # the branch did not move
    with platform.operator() as api:
        assert api.app(tenant.name, "web").commit == good
        [rejected] = [
            e.detail for e in api.events(tenant.name) if e.action == "git.push" and e.detail["result"] == "rejected"
        ]
    assert rejected["ref"] == "refs/heads/main"


def test_a_push_while_the_app_builds_is_refused_at_once(platform: Daemon, tenant: Tenant, tmp_path: Path) -> None:
    slow_page = f"slow {tenant.name}\n"  # a page of its own, so that no build cache skips the slow step
    tenant.checkout.commit({"Dockerfile": f"{DOCKERFILE}RUN sleep 4\n", "index.html": slow_page})
    other = Checkout(tmp_path / "other", platform, tenant.key, tenant.name)
    other.commit({"Dockerfile": DOCKERFILE, "index.html": "other\n"})

    with tenant.checkout.pushing() as slow:
        wait_for(lambda: any("sleep 4" in line for _, line in slow.lines), 30, "the first build to run")
        started = time.monotonic()
        refused = other.push()
        refused_after = time.monotonic() - started
    assert refused.returncode != 0 and "error: a build of web is running" in refused.stderr, refused.stderr
    assert refused_after < 2
    assert slow.returncode == 0, slow.stderr
    serving(platform, tenant.host, slow_page)

    uploaded = threading.Thread(target=upload_build, args=(platform, tenant.name, f"{DOCKERFILE}RUN sleep 4\n"))
    uploaded.start()  # `strata apps deploy --build`, through the API: its build runs while git pushes
    try:
        wait_for(lambda: running_builds(platform, tenant.name), 30, "the uploaded build to run")
        tenant.checkout.commit({"index.html": "during\n"})
        during = tenant.checkout.push()
    finally:
        uploaded.join()
    assert during.returncode != 0
    assert any(line.startswith("error: a build of web is running") for line in during.remote()), during.stderr


def upload_build(platform: Daemon, tenant: str, dockerfile: str) -> None:
    """A build of the app from a context uploaded through the API, as `strata apps deploy --build DIR` makes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in {"Dockerfile": dockerfile, "index.html": f"uploaded {tenant}\n"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    with platform.operator() as api:
        for _ in api.build(tenant, "web", buffer.getvalue()):
            pass


def running_builds(platform: Daemon, tenant: str) -> bool:
    with platform.operator() as api:
        return any(build.state == BuildState.BUILDING for build in api.builds(tenant))


def test_a_push_whose_client_goes_ends_its_build_and_frees_the_app(platform: Daemon, tenant: Tenant) -> None:
    tenant.checkout.commit({"Dockerfile": f"{DOCKERFILE}RUN sleep 60\n", "index.html": f"never {tenant.name}\n"})
    with tenant.checkout.pushing() as gone:
        wait_for(lambda: any("sleep 60" in line for _, line in gone.lines), 30, "the build to run")
        os.killpg(gone.pid, signal.SIGKILL)  # the client goes, its ssh with it
    tenant.checkout.commit({"Dockerfile": DOCKERFILE, "index.html": "after\n"})

    def pushed() -> Push | None:
        push = tenant.checkout.push()
        return push if push.returncode == 0 else None

    wait_for(pushed, 20, "a push once the first one's session ended")
    serving(platform, tenant.host, "after\n")


def test_nobody_pushes_to_another_tenants_app_nor_with_an_unknown_key(
    platform: Daemon, tenant: Tenant, unique: str, tmp_path: Path
) -> None:
    other = f"{unique}-other"
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=other))
    tenant.checkout.commit({"Dockerfile": DOCKERFILE, "index.html": "mine\n"})

    theirs = tenant.checkout.push(path=f"{other}/web")
    assert theirs.returncode != 0 and f"{tenant.name} has no repository '{other}/web'" in theirs.stderr
    bad = tenant.checkout.push(path="Web_App")
    assert bad.returncode != 0 and "is not a DNS label" in bad.stderr
    stranger = Checkout(tmp_path / "elsewhere", platform, keypair(tmp_path, "stranger"), tenant.name)
    stranger.commit({"index.html": "x\n"})
    refused = stranger.push()
    assert refused.returncode != 0 and "Permission denied" in refused.stderr
    operator_key = keypair(tmp_path, "operator")
    register(platform, operator_key, Role.OPERATOR)
    operator = Checkout(tmp_path / "operators", platform, operator_key, "admin")
    operator.commit({"index.html": "x\n"})
    unnamed = operator.push(path="web")  # an operator's key says no tenant: the path must
    assert unnamed.returncode != 0 and "as an operator, name the app as TENANT/APP" in unnamed.stderr

    assert not (platform.home / "git" / other).exists()
    assert not (platform.home / "git" / tenant.name).exists()
    with platform.operator() as api:
        assert api.apps(other) == [] and api.apps(tenant.name) == []
