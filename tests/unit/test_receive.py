"""The git hook's program: its verdict on a build's answer, and its stdlib client of the API against a fake API
on a unix socket (the NDJSON streamed line by line, a 409, "unchanged", a cut-off answer)."""

import io
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tui.ssh import receive
from tui.ssh.hook_api import BUILD_CUT_OFF, HookClient

COMMIT = "a" * 40
POPEN = subprocess.Popen
Handler = Callable[[str, str, dict[str, str], bytes, socket.socket], None]


def build(message: str | None, revision: int = 3) -> dict[str, object]:
    return {
        "id": 1, "tenant": "acme", "app": "web", "state": "succeeded", "source": "git", "actor": "a",
        "commit": COMMIT, "image": "strata-build/acme/web:1", "revision": revision, "message": message,
        "started_at": "2024-01-01T00:00:00Z", "finished_at": "2024-01-01T00:00:01Z",
    }  # fmt: skip


def read_request(conn: socket.socket) -> tuple[str, str, dict[str, str], bytes]:
    """One request, its chunked body decoded."""
    file = conn.makefile("rb")
    method, target, _ = file.readline().decode().split(" ", 2)
    headers = {}
    while (line := file.readline().strip()) != b"":
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if headers.get("transfer-encoding") == "chunked":
        while size := int(file.readline().strip(), 16):
            body += file.read(size)
            file.read(2)
        file.readline()
    return method, target, headers, body


def answer(conn: socket.socket, status: int, body: bytes) -> None:
    conn.sendall(
        b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (status, len(body), body)
    )


def chunk(conn: socket.socket, data: bytes) -> None:
    conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, list[tuple[str, str, dict[str, str], bytes]], list[Handler]]]:
    """A fake API on a unix socket: each connection's request is recorded and answered by the next handler."""
    path = str(tmp_path / "api.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()
    requests: list[tuple[str, str, dict[str, str], bytes]] = []
    handlers: list[Handler] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                method, target, headers, body = read_request(conn)
                requests.append((method, target, headers, body))
                handlers.pop(0)(method, target, headers, body, conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, requests, handlers
    # Wake the thread's accept and wait for it to end before the descriptor is closed: closed first, its number
    # could go to the next test's socket, whose connection the old thread would then take with no handler left.
    server.shutdown(socket.SHUT_RDWR)
    thread.join(timeout=10)
    server.close()


def no_app(*args: object) -> None:
    answer(args[-1], 404, b'{"error": {"code": "not_found", "message": "no app web", "field": "app"}}')  # type: ignore[arg-type]


def push(path: str, monkeypatch: pytest.MonkeyPatch) -> tuple[receive.Outcome, str]:
    monkeypatch.setattr(receive.subprocess, "Popen", lambda *a, **k: POPEN(["echo", "TAR"], stdout=subprocess.PIPE))
    out = io.StringIO()
    client = HookClient(socket=path, token="tok")
    outcome = receive.decide([receive.Update("0" * 40, COMMIT, "refs/heads/main")], "acme", "web", client, out)
    return outcome, out.getvalue()


@pytest.mark.parametrize(
    ("message", "result"),
    [(None, "deployed"), ("unchanged: web runs this image already", "unchanged"), ("some note", "deployed")],
)
def test_only_a_build_saying_unchanged_is_unchanged(
    message: str | None, result: str, api: tuple[str, list, list], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, requests, handlers = api

    def stream(method: str, target: str, headers: dict[str, str], body: bytes, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n")
        chunk(conn, b'{"log": "Step 1/1 : FROM strata/static\\n"}\n{"log": "sp')  # a line split across chunks
        chunk(conn, b'lit"}\n')
        chunk(conn, json.dumps({"build": build(message)}).encode() + b"\n")
        conn.sendall(b"0\r\n\r\n")

    handlers += [no_app, stream]
    outcome, out = push(path, monkeypatch)
    assert (outcome.code, outcome.result, outcome.revision) == (0, result, 3), out
    [(_, app_target, app_headers, _), (method, target, headers, body)] = requests
    assert app_target == "/tenants/acme/apps/web" and app_headers["authorization"] == "Bearer tok"
    assert method == "POST" and target == f"/tenants/acme/apps/web/builds?source=git&commit={COMMIT}"
    assert headers["content-type"] == "application/x-tar" and body == b"TAR\n"  # the archive, streamed chunked
    lines = out.splitlines()
    assert lines[:2] == ["Step 1/1 : FROM strata/static", "split"]
    if result == "unchanged":
        assert lines[2] == f"-----> {message}; revision 3 keeps serving at http://web.acme.localhost"
    else:
        assert lines[2] == f"-----> web runs {COMMIT[:7]} as revision 3 at http://web.acme.localhost"


def test_lines_arrive_as_the_build_prints_them(api: tuple[str, list, list]) -> None:
    path, _, handlers = api
    release = threading.Event()

    def stream(method: str, target: str, headers: dict[str, str], body: bytes, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        chunk(conn, b'{"log": "first"}\n')
        release.wait(5)
        chunk(conn, json.dumps({"build": build(None)}).encode() + b"\n")
        conn.sendall(b"0\r\n\r\n")

    handlers.append(stream)
    items = HookClient(socket=path).build("acme", "web", [b"tar"], commit=COMMIT, source="git")
    assert next(items) == "first"  # before the build's end: it waits for `release`
    release.set()
    assert next(items) == build(None)


def test_a_running_build_is_refused_with_the_apis_message(
    api: tuple[str, list, list], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _, handlers = api

    def conflict(method: str, target: str, headers: dict[str, str], body: bytes, conn: socket.socket) -> None:
        error = {"error": {"code": "conflict", "message": "a build of web is running; wait for it", "field": None}}
        answer(conn, 409, json.dumps(error).encode())

    handlers += [no_app, conflict]
    outcome, out = push(path, monkeypatch)
    assert (outcome.code, outcome.result) == (1, "rejected")
    assert out == "error: a build of web is running; wait for it\n"


def test_a_cut_off_answer_says_so(api: tuple[str, list, list], monkeypatch: pytest.MonkeyPatch) -> None:
    path, _, handlers = api

    def cut(method: str, target: str, headers: dict[str, str], body: bytes, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        chunk(conn, b'{"log": "Step 1/1"}\n')  # and the daemon goes away

    handlers += [no_app, cut]
    outcome, out = push(path, monkeypatch)
    assert (outcome.code, outcome.result) == (1, "rejected")
    assert out == f"Step 1/1\nerror: {BUILD_CUT_OFF}\n"


def test_no_daemon_is_said_plainly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, out = push(str(tmp_path / "api.sock"), monkeypatch)
    assert outcome.code == 1
    where = f"unix:{tmp_path}/api.sock"
    assert out == f"error: the Strata daemon is not running (nothing answers on {where}); start it with `strata up`\n"


def test_the_running_commit_is_not_built_again(api: tuple[str, list, list], monkeypatch: pytest.MonkeyPatch) -> None:
    path, requests, handlers = api
    handlers.append(lambda *args: answer(args[-1], 200, json.dumps({"name": "web", "commit": COMMIT}).encode()))
    outcome, out = push(path, monkeypatch)
    assert (outcome.code, outcome.result, len(requests)) == (0, "unchanged", 1)
    assert out == f"web is at {COMMIT[:7]} already: nothing to deploy\n"


def test_the_hook_starts_on_the_standard_library() -> None:
    """The hook runs on every push: importing httpx, pydantic or Strata's schemas cost ~250 ms of its start."""
    code = "import sys, tui.ssh.receive; print(' '.join(sorted(sys.modules)))"
    modules = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    ).stdout.split()
    heavy = {"httpx", "pydantic", "tenants", "tenants.client", "cryptography", "dataclasses"}
    assert not heavy & set(modules)
    assert {name for name in modules if name.startswith(("tui", "tenants", "strata"))} == {
        "tui",
        "tui.ssh",
        "tui.ssh.hook_api",
        "tui.ssh.receive",
    }
