"""Git over SSH, Dokku's model: `git push` builds and deploys, `git clone` and `git fetch` read what was pushed.

The git client runs `git-receive-pack 'web'` (a push) or `git-upload-pack 'web'` (a clone or fetch) over SSH.
The key says the tenant; the path names the app (`web`, `/web`, `web.git`; an operator names `acme/web`). Each
app has a bare repository, `STRATA_HOME/git/<tenant>/<app>.git`, made on the app's first push with the
`pre-receive` hook below, which builds what was pushed to main and deploys it (`tui.ssh.receive`): a failed
build rejects the push, so the branch only ever moves to a commit that was built and deployed.

The hook reaches the control API with the session's token, as every other SSH command does, and reports what
it decided in a file that the server audits (`git.push`) once the push is over.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenants.client import ApiError, StrataClient
from tenants.errors import Invalid
from tenants.names import check_name
from tui.ssh.commands import UsageError

GIT_DIR = "git"  # under STRATA_HOME: <tenant>/<app>.git
SERVICES = {"git-receive-pack": "receive-pack", "git-upload-pack": "upload-pack"}
STAMP_KEY = "strata.owner"  # in each repository's config: whose app it holds (see `_stamp`)
GIT_TIMEOUT_SECONDS = 30  # `git init` and `git config`, which touch a few small files

# Prints its first line at once, before Python starts (the push's first `remote:` line), then hands the ref
# updates to the platform's interpreter. Rewritten on every push, so an upgrade of Strata reaches old repositories.
PRE_RECEIVE = """\
#!/bin/sh
# Made by Strata (tui/ssh/git.py) and rewritten on every push: builds and deploys what is pushed to main.
updates=$(cat)
set -- $updates
case "$3:$2" in
refs/heads/main:*[!0]* | refs/heads/master:*[!0]*)
    printf -- '-----> Building %s from %.7s\\n' "$STRATA_APP" "$2" ;;
esac
printf '%s\\n' "$updates" | exec "$STRATA_PYTHON" -u -m tui.ssh.receive
"""


@dataclass(frozen=True)
class GitRequest:
    """A git service for one app's repository, asked for by a session."""

    service: str  # receive-pack (push) | upload-pack (clone, fetch)
    tenant: str
    app: str

    @property
    def push(self) -> bool:
        return self.service == "receive-pack"

    def repository(self, home: Path) -> Path:
        return home / GIT_DIR / self.tenant / f"{self.app}.git"


def git_request(words: list[str], tenant: str | None) -> GitRequest | None:
    """The git service this SSH command asks for, or None if it is no git command; `tenant` is the session's
    (None for an operator). A path that names another tenant, or no app, is a UsageError: nothing is made."""
    if not words or words[0] not in SERVICES:
        return None
    if len(words) != 2:
        raise UsageError(f"error: usage: {words[0]} 'APP'\n")
    path = words[1].strip("/").removesuffix(".git")
    owner, slash, app = path.rpartition("/")
    if tenant is None and not slash:
        raise UsageError(f"error: as an operator, name the app as TENANT/APP: ssh://admin@HOST/acme/{app or 'web'}\n")
    if tenant is not None and slash and owner != tenant:
        raise UsageError(
            f"error: {tenant} has no repository {path!r}: name one of your apps alone, as in ssh://{tenant}@HOST/APP\n"
        )
    owner = owner or (tenant or "")
    try:
        check_name(owner, field="tenant")
        check_name(app, field="app name")
    except Invalid as bad:
        raise UsageError(f"error: {bad}\n") from None
    return GitRequest(SERVICES[words[0]], owner, app)


class GitRefused(Exception):
    """The repository may not be served; the message says why, to the git client."""


_pushed: set[Path] = set()  # the repositories a push to is under way, in this process (the daemon's)


@contextmanager
def one_push(request: GitRequest, home: Path) -> Iterator[None]:
    """Hold the app's repository for a push, from its first byte to its refs updated; a second push is refused
    at once (GitRefused). The build API allows one build per app too, but the refs move after the hook has
    ended: without this, a push that began before the first one's refs moved would build and deploy its commit,
    then fail to update the branch, leaving the app running a commit that no branch holds."""
    if not request.push:
        yield
        return
    repository = request.repository(home)
    if repository in _pushed:
        raise GitRefused(f"a build of {request.app} is running (another push); wait for it to end")
    _pushed.add(repository)
    try:
        yield
    finally:
        _pushed.discard(repository)


def prepare(request: GitRequest, home: Path, token: str) -> Path:
    """The request's repository, ready to serve (blocking: run it in a thread).

    A push makes it on the app's first push, and installs the hook. A repository left by a deleted app (or of
    a deleted tenant of the same name) is never served: a push starts afresh, a fetch finds nothing.
    """
    if shutil.which("git") is None:
        raise GitRefused("git is not installed on this server; its operator installs it (apt-get install git)")
    repository = request.repository(home)
    with StrataClient(socket=home / "api.sock", token=token) as client:
        try:
            tenant = client.tenant(request.tenant)
        except ApiError as exc:
            raise GitRefused(exc.message) from None
        try:
            app = client.app(request.tenant, request.app)
        except ApiError as exc:
            if exc.status != 404:
                raise GitRefused(exc.message) from None
            app = None
    owner = _stamp(tenant.created_at.isoformat(), app.created_at.isoformat() if app else None)
    current = _config(repository, STAMP_KEY) if repository.is_dir() else None
    if not request.push:
        if app is None or current != owner:
            raise GitRefused(f"{request.tenant}/{request.app} has no repository: push to it first")
        return repository
    if repository.is_dir() and _stale(repository, current, owner, app is None):
        shutil.rmtree(repository)  # another app's history: neither served nor built upon
    if not repository.is_dir():
        repository.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _git("init", "--quiet", "--bare", str(repository))
        _git("-C", str(repository), "config", "receive.fsckObjects", "true")
    hook = repository / "hooks" / "pre-receive"
    if not hook.exists() or hook.read_text() != PRE_RECEIVE:
        hook.write_text(PRE_RECEIVE)
        hook.chmod(0o755)
    return repository


def adopt(request: GitRequest, home: Path, token: str) -> None:
    """After a push: stamp the repository with the app it made (or updated), so that it is served."""
    repository = request.repository(home)
    with StrataClient(socket=home / "api.sock", token=token) as client:
        try:
            tenant, app = client.tenant(request.tenant), client.app(request.tenant, request.app)
        except ApiError:
            return  # no app (its first build failed): nothing to serve yet
    _git("-C", str(repository), "config", STAMP_KEY, _stamp(tenant.created_at.isoformat(), app.created_at.isoformat()))


def environment(request: GitRequest, home: Path, token: str, report: Path, protocol: str | None) -> dict[str, str]:
    """The environment of `git receive-pack`/`upload-pack`, and so of the hook: the session's token (never
    logged nor shown), the app, where to report. Nothing else of the daemon's own environment."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "STRATA_HOME": str(home),
        "STRATA_TOKEN": token,
        "STRATA_TENANT": request.tenant,
        "STRATA_APP": request.app,
        "STRATA_PUSH_REPORT": str(report),
        "STRATA_PYTHON": sys.executable,
        "PYTHONUNBUFFERED": "1",
    }
    if protocol in ("version=0", "version=1", "version=2"):  # the client's wire protocol (GIT_PROTOCOL)
        env["GIT_PROTOCOL"] = protocol
    return env


def new_report(home: Path) -> Path:
    """An empty file for the hook's decisions (one JSON object a line), private to the daemon's user."""
    directory = home / GIT_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix=".push-", suffix=".jsonl")
    os.close(fd)
    return Path(name)


def read_report(report: Path) -> list[dict[str, Any]]:
    """The hook's decisions, and the report gone."""
    try:
        lines = report.read_text().splitlines()
    except OSError:
        return []
    finally:
        report.unlink(missing_ok=True)
    decisions = []
    for line in lines:
        try:
            decision = json.loads(line)
        except ValueError:
            continue
        if isinstance(decision, dict):
            decisions.append(decision)
    return decisions


def _stamp(tenant_created: str, app_created: str | None) -> str:
    """Whose app a repository holds: the tenant and the app, by when they were made (a name may come back)."""
    return f"{tenant_created} {app_created or '-'}"


def _stale(repository: Path, current: str | None, owner: str, no_app: bool) -> bool:
    """Does this repository hold the history of an app that is gone? Stamped for another app, or unstamped
    with refs while no app exists. An unstamped one without refs is a first push under way (a concurrent
    push must not take it away), and one with refs and an app is a first push whose stamp is still to come."""
    if current is not None:
        return current != owner
    return no_app and _has_refs(repository)


def _has_refs(repository: Path) -> bool:
    refs = subprocess.run(
        ["git", "-C", str(repository), "for-each-ref", "--count=1"],
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_SECONDS,
    )
    return bool(refs.stdout.strip())


def _config(repository: Path, key: str) -> str | None:
    found = subprocess.run(
        ["git", "-C", str(repository), "config", "--get", key],
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_SECONDS,
    )
    return found.stdout.strip() or None


def _git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True, timeout=GIT_TIMEOUT_SECONDS)
