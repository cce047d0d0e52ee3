"""The console over SSH: time from `ssh -t` to the console's first paint, and memory per session, for 1 and
5 sessions at once.

    .venv/bin/python bench/ssh.py

Runs a daemon in a temporary STRATA_HOME (no containers), the OpenSSH client in tmux windows, and reads the
console processes' private memory from /proc. Everything it starts it stops again.
"""

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SSH_OPTIONS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"
PAINTED = "TENANT"  # the overview's header row
TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def strata(home: Path, *args: str) -> str:
    env = {**os.environ, "STRATA_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "strata", *args], env=env, check=True, capture_output=True, text=True
    ).stdout


def private_mib(home: Path) -> list[float]:
    """Private memory (MiB) of each console process serving this home's SSH sessions: the children of its
    console fork server (pages shared with the fork server count once, there)."""
    socket_path = str(home / "console.sock").encode()
    processes = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        processes[int(pid)] = (parent, cmdline)
    zygotes = {pid for pid, (_, cmdline) in processes.items() if socket_path in cmdline}
    sizes = []
    for pid, (parent, _) in processes.items():
        if parent not in zygotes:
            continue
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        kib = sum(int(line.split()[1]) for line in rollup if line.startswith(("Private_Clean", "Private_Dirty")))
        sizes.append(kib / 1024)
    return sizes


def sessions(home: Path, port: int, key: Path, count: int) -> tuple[list[float], list[float]]:
    names = [f"strata-bench-{uuid.uuid4().hex[:6]}" for _ in range(count)]
    started = time.monotonic()
    for name in names:
        command = f"ssh -t -p {port} -i {key} {SSH_OPTIONS} admin@127.0.0.1"
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "120", "-y", "30", command], check=True)
    painted: dict[str, float] = {}
    try:
        while len(painted) < count and time.monotonic() - started < TIMEOUT_SECONDS:
            for name in names:
                if name not in painted:
                    screen = subprocess.run(
                        ["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True
                    ).stdout
                    if PAINTED in screen:
                        painted[name] = time.monotonic() - started
            time.sleep(0.02)
        time.sleep(1)  # settled
        return list(painted.values()), private_mib(home)
    finally:
        for name in names:
            subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
        time.sleep(1)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home, port = Path(tmp) / "home", free_port()
        env = {**os.environ, "STRATA_HOME": str(home)}
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "strata",
                "up",
                "--no-local-node",
                "--gateway",
                f"127.0.0.1:{free_port()}",
                "--gateway-admin",
                f"127.0.0.1:{free_port()}",
                "--ssh",
                f"127.0.0.1:{port}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while not (home / "api.sock").exists():
                time.sleep(0.05)
            time.sleep(0.5)
            key = Path(tmp) / "operator"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
            strata(home, "keys", "add", "--operator", f"{key}.pub")
            strata(home, "tenants", "create", "bench")
            print(f"{'sessions':>8} {'first paint (median)':>21} {'slowest':>8} {'private MiB each':>17}")
            for count in (1, 5):
                times, memory = sessions(home, port, key, count)
                print(
                    f"{count:>8} {statistics.median(times) * 1000:>19.0f}ms {max(times) * 1000:>6.0f}ms "
                    f"{statistics.mean(memory) if memory else float('nan'):>17.1f}"
                )
        finally:
            daemon.send_signal(signal.SIGINT)
            daemon.wait(timeout=30)


if __name__ == "__main__":
    main()
