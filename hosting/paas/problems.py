"""Why each app does not run as asked, in words (`App.problem`), until it does; and the backoff of its creates.

Keyed by app id, which is never reused (see `tenants.models`); what is held for an app goes with it.
"""

from collections import Counter
from collections.abc import Iterable

from hosting.paas.planner import backoff
from hosting.paas.tracked import Tracked
from tenants.enums import InstanceState
from tenants.instances import DesiredApp


class AppProblems:
    def __init__(self) -> None:
        self._problems: dict[int, str | None] = {}  # app id -> why it does not run as asked
        self._saved: dict[int, str | None] = {}  # as last written
        self._failures: dict[int, tuple[int, float]] = {}  # app id -> (creates failed in a row, retry at)
        self._unplaceable: set[int] = set()  # apps whose being unplaceable is logged already

    def unplaceable(self, app: DesiredApp, reason: str) -> bool:
        """Record that no node fits the app; True the first time in a row (to be logged then, not every pass)."""
        self._problems[app.app_id] = f"cannot be placed: {reason}"
        first = app.app_id not in self._unplaceable
        self._unplaceable.add(app.app_id)
        return first

    def create_failed(self, app: DesiredApp, why: str, now: float) -> float:
        """Record a failed create; returns the seconds before the app's creates are tried again."""
        failures = self._failures.get(app.app_id, (0, 0.0))[0] + 1
        self._failures[app.app_id] = (failures, now + backoff(failures))
        self._problems[app.app_id] = f"{why} (tried {failures} times, again with backoff)"
        return backoff(failures)

    def pull_failed(self, app: DesiredApp, why: str) -> None:
        """Record that the app's image could not be pulled (`pulls` keeps the count and the backoff)."""
        self._problems[app.app_id] = why

    def created(self, app: DesiredApp) -> None:
        self._failures.pop(app.app_id, None)
        self._unplaceable.discard(app.app_id)
        self._problems[app.app_id] = None

    def retry_at(self) -> dict[int, float]:
        """App id -> when its failed creates may be tried again (monotonic)."""
        return {app_id: at for app_id, (_, at) in self._failures.items()}

    def settle(self, desired: Iterable[DesiredApp], tracked: Iterable[Tracked]) -> None:
        """Clear the problem of each app with all its replicas of the current revision ready; forget apps gone."""
        ready = Counter((t.app_id, t.revision) for t in tracked if t.state == InstanceState.READY)
        live = set()
        for app in desired:
            live.add(app.app_id)
            if ready[(app.app_id, app.revision)] >= app.replicas:
                self._problems[app.app_id] = None
        self._problems = {key: value for key, value in self._problems.items() if key in live}
        self._saved = {key: value for key, value in self._saved.items() if key in live}
        self._failures = {key: value for key, value in self._failures.items() if key in live}
        self._unplaceable &= live

    def unsaved(self) -> dict[int, str | None]:
        """The problems changed since `saved` was last told."""
        return {key: text for key, text in self._problems.items() if self._saved.get(key) != text}

    def saved(self, problems: dict[int, str | None]) -> None:
        self._saved.update(problems)
