"""The `pre-receive` hook's program: build what was pushed to main and deploy it, or reject the push.

Run by the hook of an app's repository (`tui.ssh.git`) as `python -u -m tui.ssh.receive`, with the ref updates
(`OLD NEW REF` lines) on its input and the session's token, tenant and app in its environment. Whatever it
prints reaches the git client as `remote:` lines, as it is printed. Its exit code is the push's fate: 0 lets
the refs move, anything else rejects the whole push, so that a branch never points at a commit that is not
running (Dokku's model: the push is the transaction).

It runs on every push, so it starts on the standard library alone: it calls the API with `tui.ssh.hook_api`,
not `tenants.client` (whose httpx and pydantic took ~250 ms to import), and nothing else of Strata.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

from tui.ssh.hook_api import SUCCEEDED, ApiError, HookClient, unchanged

TYPE_CHECKING = False  # mypy takes it as True; `typing` alone took ~4 ms to import
if TYPE_CHECKING:
    from typing import IO

DEPLOY_REFS = ("refs/heads/main", "refs/heads/master")
NO_COMMIT = "0" * 40
ARCHIVE_CHUNK = 65536


class Update:
    """One line of the hook's input: a ref moving from `old` to `new` (all zeros: made, or deleted)."""

    __slots__ = ("old", "new", "ref")  # a plain class: `dataclasses` took ~12 ms to import

    def __init__(self, old: str, new: str, ref: str) -> None:
        self.old, self.new, self.ref = old, new, ref


class Outcome:
    """What became of a push: the exit code, and what the audit log keeps of each ref."""

    __slots__ = ("code", "result", "reason", "revision")

    def __init__(self, code: int, result: str, reason: str | None = None, revision: int | None = None) -> None:
        self.code = code
        self.result = result  # deployed | unchanged | rejected
        self.reason, self.revision = reason, revision


def decide(updates: list[Update], tenant: str, app: str, client: HookClient, out: IO[str]) -> Outcome:
    """Refuse what cannot deploy, skip a commit that runs already, else build and deploy the pushed commit."""
    if not updates:
        return Outcome(0, "unchanged")
    for update in updates:
        if update.new == NO_COMMIT:
            return _reject(out, f"deleting {update.ref} is refused: {app} keeps running (`apps delete` removes it)")
        if update.ref not in DEPLOY_REFS:
            return _reject(out, f"{update.ref} is refused: push to main to deploy (git push REMOTE HEAD:main)")
    if len(updates) > 1:
        return _reject(out, "push main or master, not both")
    update = updates[0]
    try:
        running = client.app(tenant, app).get("commit")
    except ApiError as exc:
        if exc.status != 404:
            return _reject(out, exc.message)
        running = None  # its first push: the build makes the app
    if running == update.new:
        print(f"{app} is at {update.new[:7]} already: nothing to deploy", file=out)
        return Outcome(0, "unchanged")
    return _build(update.new, tenant, app, client, out)


def _build(commit: str, tenant: str, app: str, client: HookClient, out: IO[str]) -> Outcome:
    """Stream `git archive` of the commit to the build API, and its output back, line by line."""
    archive = subprocess.Popen(["git", "archive", "--format=tar", commit], stdout=subprocess.PIPE)
    assert archive.stdout is not None
    build: dict[str, object] | None = None
    try:
        for item in client.build(tenant, app, _chunks(archive.stdout), commit=commit, source="git"):
            if isinstance(item, dict):
                build = item
            else:
                print(item.rstrip("\n"), file=out)
    except ApiError as exc:
        return _reject(out, exc.message)
    finally:
        archive.stdout.close()
        archive.wait()
    if build is None or build.get("state") != SUCCEEDED:
        return _reject(out, str((build or {}).get("message") or "the build failed"))
    url = f"http://{app}.{tenant}.localhost"
    revision = build.get("revision")
    revision = revision if isinstance(revision, int) else None
    if unchanged(build):  # the commit built the very image that runs (only its files moved, say)
        print(f"-----> {build['message']}; revision {revision} keeps serving at {url}", file=out)
        return Outcome(0, "unchanged", revision=revision)
    print(f"-----> {app} runs {commit[:7]} as revision {revision} at {url}", file=out)
    return Outcome(0, "deployed", revision=revision)


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(ARCHIVE_CHUNK):
        yield chunk


def _reject(out: IO[str], reason: str) -> Outcome:
    print(f"error: {reason}", file=out)
    return Outcome(1, "rejected", reason)


def _report(path: str, updates: list[Update], outcome: Outcome) -> None:
    """One JSON line per ref for the SSH server, which audits them (`git.push`) when the push is over."""
    with open(path, "a") as report:
        for update in updates:
            entry: dict[str, str | int] = {"ref": update.ref, "old": update.old, "new": update.new}
            entry["result"] = outcome.result
            entry |= {"reason": outcome.reason} if outcome.reason else {}
            entry |= {"revision": outcome.revision} if outcome.revision is not None else {}
            report.write(json.dumps(entry) + "\n")


def main() -> int:
    tenant, app = os.environ["STRATA_TENANT"], os.environ["STRATA_APP"]
    updates = [Update(*line.split()) for line in sys.stdin if len(line.split()) == 3]
    client = HookClient(socket=os.path.join(os.environ["STRATA_HOME"], "api.sock"), token=os.environ["STRATA_TOKEN"])
    outcome = decide(updates, tenant, app, client, sys.stdout)
    if report := os.environ.get("STRATA_PUSH_REPORT"):
        _report(report, updates, outcome)
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
