"""`strata up` for a benchmark: started in `home` with these arguments, returned once its API answers."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tenants.client import ApiError, StrataClient

START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 30


def start(home: Path, *arguments: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`env` adds to (or overrides) this process's environment for the daemon."""
    daemon = subprocess.Popen(
        [sys.executable, "-m", "strata", "up", *arguments],
        env={**os.environ, **(env or {}), "STRATA_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=open(home.parent / "daemon.log", "wb"),  # noqa: SIM115 (the process owns it)
    )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not _answers(home / "api.sock"):  # the socket is bound a moment before the API serves on it
        if time.monotonic() > deadline or daemon.poll() is not None:
            raise SystemExit(f"strata up did not start; see {home.parent / 'daemon.log'}")
        time.sleep(0.05)
    return daemon


def stop(daemon: subprocess.Popen[bytes], platform: str) -> None:
    """Stop the daemon as Ctrl-C would (its front door stops with it: SIGTERM would leave HAProxy serving for a
    next daemon), killed if it has not within `STOP_TIMEOUT_SECONDS`; then remove what it kept of `platform`'s."""
    daemon.send_signal(signal.SIGINT)
    try:
        daemon.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
    remove_containers(platform)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def remove_containers(platform: str) -> None:
    """Remove the containers and networks the daemon of `platform` (its id) left: it keeps them across a stop."""
    if not platform:
        return
    label = f"--filter=label=strata.platform={platform}"
    for listing, removal in ((["ps", "-aq"], ["rm", "-f"]), (["network", "ls", "-q"], ["network", "rm"])):
        ids = subprocess.run(["docker", *listing, label], capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", *removal, *ids], capture_output=True)


def _answers(socket: Path) -> bool:
    if not socket.exists():
        return False
    try:
        with StrataClient(socket=socket) as client:
            client.health()
    except ApiError:
        return False
    return True
