"""`strata up` for a benchmark: started in `home` with these arguments, returned once its API answers."""

import os
import subprocess
import sys
import time
from pathlib import Path

from tenants.client import ApiError, StrataClient

START_TIMEOUT_SECONDS = 30


def start(home: Path, *arguments: str) -> subprocess.Popen[bytes]:
    daemon = subprocess.Popen(
        [sys.executable, "-m", "strata", "up", *arguments],
        env={**os.environ, "STRATA_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=open(home.parent / "daemon.log", "wb"),  # noqa: SIM115 (the process owns it)
    )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not _answers(home / "api.sock"):  # the socket is bound a moment before the API serves on it
        if time.monotonic() > deadline or daemon.poll() is not None:
            raise SystemExit(f"strata up did not start; see {home.parent / 'daemon.log'}")
        time.sleep(0.05)
    return daemon


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
