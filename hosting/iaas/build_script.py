"""What the platform's own image builds share (the node VMs' guest image, the managed PostgreSQL's image): a
build script run with its whole output to a log file and its `step: ` lines to the caller, and a lock that keeps
two builds of one work directory apart (the second waits, then finds the first one's image)."""

import fcntl
import os
import subprocess
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".build.lock"  # in the work directory, held by the build in progress
LOG_TAIL_LINES = 30


@contextmanager
def build_lock(directory: Path, log: Callable[[str], None]) -> Iterator[None]:
    """Hold `directory`'s build lock, saying so through `log` when another build holds it first."""
    with (directory / LOCK_FILE).open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another build in {directory}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def run_script(script: Path, env: Mapping[str, str], log_path: Path, log: Callable[[str], None]) -> tuple[int, str]:
    """Run `bash script` with `env` over this process's environment; its output goes whole to `log_path`, its
    `step: ` lines to `log`. Returns its exit status and the last lines of its output (for an error)."""
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    with (
        log_path.open("w") as sink,
        subprocess.Popen(
            ["bash", str(script)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env},
        ) as build,
    ):
        assert build.stdout is not None
        for line in build.stdout:
            sink.write(line)
            tail.append(line)
            if line.startswith("step: "):
                log(line.removeprefix("step: ").rstrip())
    return build.returncode, "".join(tail)
