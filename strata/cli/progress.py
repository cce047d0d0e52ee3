"""Following a deploy until its revision serves: the image's pull (a bar on a terminal, plain lines otherwise),
then its instances; a problem ends it with a non-zero exit, as `fly deploy` and `kubectl rollout status` do."""

import shutil
import sys
import time

import click

from strata.cli.context import fail
from tenants.client import StrataClient
from tenants.enums import InstanceState
from tenants.schemas import AppRead, PullRead

POLL_SECONDS = 0.5
FOLLOW_TIMEOUT_SECONDS = 15 * 60
STALE_PROBLEM_SECONDS = 5.0  # a problem the app had before the deploy is the old revision's until then
BAR_WIDTH = 30
MIB = 1024 * 1024


def follow(client: StrataClient, tenant: str, name: str, revision: int, before: str | None) -> None:
    """Wait until revision `revision` of TENANT/NAME has all its instances ready; exit 1 naming the problem if
    it has one (`before` is the problem the app had before the deploy), or when it is superseded or too slow.
    Ctrl-C stops following and leaves the deploy as it is."""
    show = _Bar() if sys.stdout.isatty() else _Lines()
    started = time.monotonic()
    try:
        while True:
            app = client.app(tenant, name)
            if app.revision != revision:
                show.end()
                click.echo(f"revision {revision} was replaced by revision {app.revision} meanwhile")
                return
            if app.pull is not None:
                show.pull(app.pull)
            problem = _problem(app, before, time.monotonic() - started)
            if problem:
                show.end()
                fail(f"revision {revision} of {tenant}/{name}: {problem}", hint=f"strata apps show {tenant}/{name}")
            if app.ready() >= app.replicas:
                show.end()
                click.echo(f"revision {revision} is ready: {app.ready()}/{app.replicas} instance(s)")
                return
            if time.monotonic() - started > FOLLOW_TIMEOUT_SECONDS:
                show.end()
                fail(f"revision {revision} is not ready after {FOLLOW_TIMEOUT_SECONDS // 60} min: {app.reason()}")
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        show.end()
        click.echo(f"stopped following; the deploy goes on (`strata apps show {tenant}/{name}`)", err=True)


def _problem(app: AppRead, before: str | None, waited: float) -> str | None:
    """Why this revision does not run, if it will not without a change: the app's problem (a failed pull, no
    node fits, failing creates) or an instance of the revision in a crash loop."""
    if app.problem and (app.problem != before or waited > STALE_PROBLEM_SECONDS):
        return app.problem
    for instance in app.instances:
        if instance.revision == app.revision and instance.state == InstanceState.CRASHLOOP:
            return f"instance {instance.id}: {instance.message or 'crashing'}"
    return None


class _Lines:
    """Plain lines for a log or a pipe: one per status of the pull and per tenth of its bytes."""

    def __init__(self) -> None:
        self._said: tuple[str, int] | None = None

    def pull(self, pull: PullRead) -> None:
        tenth = pull.done_bytes * 10 // pull.total_bytes if pull.total_bytes else 0
        said = (pull.status, tenth)
        if said != self._said:
            self._said = said
            sizes = f" {pull.done_bytes / MIB:.1f}/{pull.total_bytes / MIB:.1f} MiB" if pull.total_bytes else ""
            click.echo(f"{pull.status} {pull.reference}{sizes}")

    def end(self) -> None:
        pass


class _Bar:
    """One line redrawn in place: `pulling REF [#####-----] 12.3/40.0 MiB`."""

    def __init__(self) -> None:
        self._drawn = False

    def pull(self, pull: PullRead) -> None:
        share = pull.done_bytes / pull.total_bytes if pull.total_bytes else 0.0
        filled = int(share * BAR_WIDTH)
        sizes = f"{pull.done_bytes / MIB:.1f}/{pull.total_bytes / MIB:.1f} MiB" if pull.total_bytes else "starting"
        line = f"{pull.status} {pull.reference} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {sizes}"
        width = shutil.get_terminal_size().columns - 1
        click.echo("\r" + line[:width].ljust(width), nl=False)
        self._drawn = True

    def end(self) -> None:
        if self._drawn:
            click.echo()
            self._drawn = False
