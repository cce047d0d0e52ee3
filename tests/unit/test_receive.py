"""The git hook's verdict on a build's result: "unchanged" only when the build says so, not for any message."""

import io
import subprocess
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tenants.client import ApiError
from tenants.enums import BuildSource, BuildState
from tenants.schemas import BuildRead
from tui.ssh import receive

COMMIT = "a" * 40
POPEN = subprocess.Popen


class FakeClient:
    def __init__(self, message: str | None) -> None:
        self.message = message

    def app(self, tenant: str, app: str) -> Any:
        raise ApiError(404, "not_found", "no app")

    def build(self, tenant: str, app: str, chunks: Iterable[bytes], **_: object) -> Iterator[str | BuildRead]:
        list(chunks)
        yield "Step 1/1 : FROM strata/static"
        now = datetime.now(UTC)
        yield BuildRead(
            id=1, tenant=tenant, app=app, state=BuildState.SUCCEEDED, source=BuildSource.GIT, actor="a",
            commit=COMMIT, image="strata-build/acme/web:1", revision=3, message=self.message, started_at=now,
            finished_at=now,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("message", "result"),
    [(None, "deployed"), ("unchanged: web runs this image already", "unchanged"), ("some note", "deployed")],
)
def test_only_a_build_saying_unchanged_is_unchanged(
    message: str | None, result: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(receive.subprocess, "Popen", lambda *a, **k: POPEN(["true"], stdout=subprocess.PIPE))
    out = io.StringIO()
    outcome = receive.decide(
        [receive.Update("0" * 40, COMMIT, "refs/heads/main")], "acme", "web", FakeClient(message), out
    )  # type: ignore[arg-type]
    assert (outcome.code, outcome.result, outcome.revision) == (0, result, 3)
