"""The disk under STRATA_HOME full: writes answer 503 (with Retry-After) and change nothing; reads and the
front door keep answering and the daemon stays up; once space is back the same write succeeds, once, beside
every earlier row. The disk is a small tmpfs of the test's own holding the home, the database and the
daemon's log, so mounting it needs root."""

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.frontdoor import LOG_READ_SECONDS
from strata.api.errors import RETRY_AFTER_SECONDS
from tenants.enums import Role
from tenants.schemas import KeyCreate, TenantCreate
from tests.containers import wait_for
from tests.harness import Daemon, start_daemon

DISK_SIZE = "4m"  # the home of an idle daemon takes ~300 KiB of it
UNMOUNT_TIMEOUT_SECONDS = 10  # the daemon's children may hold it open for a moment after it exits
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b"
LONG_TARGET = 2000  # characters: a few access-log lines overflow the page the log's last line left room in
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG+mEmslSTuTACdJ1OcI6sJAxtlN+/2ie1pKI3GsgLnx e@f"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_SIZE mounted for the test, unmounted after it whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        for log in mountpoint.glob("*-daemon.log"):  # kept for a failure's reading
            shutil.copy(log, tmp_path)
        _unmount(mountpoint)


def test_a_full_disk_refuses_writes_with_a_503_and_loses_nothing(disk: Path) -> None:
    daemon = start_daemon(disk / "home")  # its log, disk/home-daemon.log, is on the full disk too
    try:
        with daemon.operator() as api:
            api.create_tenant(TenantCreate(name="acme"))
            api.add_key(KeyCreate(public_key=KEY, role=Role.TENANT, tenant="acme"))
            events = [event.id for event in api.events()]  # newest first
        _gateway_request(daemon)  # an access log with lines already, whose last page a torn write would end
        wait_for(lambda: (disk / "home" / "logs" / "access.log").exists(), what="the access log")

        fill = _fill(disk)
        writes = (
            ("/tenants", {"name": "globex"}),
            ("/keys", {"public_key": OTHER_KEY, "role": "tenant", "tenant": "acme"}),
        )
        with _api(daemon) as http:
            for path, body in writes:
                refused = http.post(path, json=body)
                assert refused.status_code == 503, refused.text
                assert refused.json()["error"]["code"] == "unavailable"
                assert refused.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
            assert [t["name"] for t in http.get("/tenants").json()] == ["acme"]  # reads answer, unchanged
            assert [e["id"] for e in http.get("/events").json()] == events
        for _ in range(20):  # the front door serves on while its access log cannot take these lines
            assert _gateway_request(daemon, "/" + "x" * LONG_TARGET) == 404
        time.sleep(LOG_READ_SECONDS * 2)
        assert daemon.process.poll() is None

        fill.unlink()
        with _api(daemon) as http:
            assert [http.post(path, json=body).status_code for path, body in writes] == [201, 201]
        with daemon.operator() as api:
            assert [t.name for t in api.tenants()] == ["acme", "globex"]  # once, beside the earlier rows
            assert [key.comment for key in api.keys()] == ["a@b", "e@f"]
            assert [event.id for event in api.events()][2:] == events
        _gateway_request(daemon)  # its line may end the torn one (HAProxy appends where the short write stopped)
        _gateway_request(daemon)
        time.sleep(LOG_READ_SECONDS * 2)
        log = (disk / "home" / "logs" / "access.log").read_text().splitlines()
        # HAProxy writes what fits of the line that fills the disk: at most one line is not JSON (the daemon's
        # reader skips it); the lines before and after it are whole
        torn = [line for line in log if not _is_json(line)]
        assert len(torn) <= 1, torn
        assert json.loads(log[-1])["host"] == "web.acme.localhost"
    finally:
        assert daemon.stop() == 0


def test_a_daemon_stopped_while_its_disk_is_full_exits_cleanly_and_starts_again_whole(disk: Path) -> None:
    home = disk / "home"
    daemon = start_daemon(home)
    stopped = threading.Event()

    def request_until_stopped() -> None:  # so lines wait for the last flush, at the stop, which cannot write them
        with contextlib.suppress(httpx.TransportError):
            while not stopped.is_set():
                _gateway_request(daemon)

    client = threading.Thread(target=request_until_stopped)
    try:
        with daemon.operator() as api:
            api.create_tenant(TenantCreate(name="acme"))
        fill = _fill(disk)
        client.start()
        assert daemon.stop() == 0
        stopped.set()

        fill.unlink()
        daemon = start_daemon(home, daemon.port)
        with daemon.operator() as api:
            assert [t.name for t in api.tenants()] == ["acme"]
            api.create_tenant(TenantCreate(name="globex"))
        assert daemon.stop() == 0
    finally:
        stopped.set()
        if client.is_alive():
            client.join(timeout=10)
        daemon.stop()


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _fill(disk: Path) -> Path:
    """Write a file until the disk refuses another byte; return it (unlinking it frees the disk)."""
    fill = disk / "fill"
    fd = os.open(fill, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for chunk in (1 << 20, 4096, 1):
            with pytest.raises(OSError, match="No space left"):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0
    return fill


def _api(daemon: Daemon) -> httpx.Client:
    """The control API over TCP, as a script sees it (headers included)."""
    return httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {daemon.operator_token}"})


def _gateway_request(daemon: Daemon, target: str = "/") -> int:
    """A request for an app that does not exist: a 404 the gateway answers and logs."""
    return httpx.get(f"http://{daemon.gateway}{target}", headers={"Host": "web.acme.localhost"}).status_code


def _unmount(mountpoint: Path) -> None:
    deadline = time.monotonic() + UNMOUNT_TIMEOUT_SECONDS
    while subprocess.run(["umount", str(mountpoint)], capture_output=True, check=False).returncode != 0:
        if time.monotonic() > deadline:
            subprocess.run(["umount", "--lazy", str(mountpoint)], check=True)  # detached now, freed when let go
            return
        time.sleep(0.1)
