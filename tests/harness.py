"""The real thing, started for tests: a `strata up` daemon in a temporary STRATA_HOME, reached over
its unix socket (and TCP), and the `strata` CLI run as a subprocess against it."""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tenants.client import StrataClient

STRATA = [sys.executable, "-m", "strata"]
START_TIMEOUT_SECONDS = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Daemon:
    home: Path
    port: int
    process: subprocess.Popen[bytes]
    gateway: str  # HOST:PORT
    https: str
    admin: str
    ssh: str
    extra_env: dict[str, str]

    @property
    def env(self) -> dict[str, str]:
        return _env(self.home, self.extra_env)

    @property
    def operator_token(self) -> str:
        return (self.home / "operator.token").read_text().strip()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, token: str | None = None) -> StrataClient:
        return StrataClient(socket=self.home / "api.sock", token=token)

    def operator(self) -> StrataClient:
        return self.client(self.operator_token)

    def cli(
        self, *args: str, token: str | None = None, stdin: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = self.env | ({"STRATA_TOKEN": token} if token else {})
        return subprocess.run(
            [*STRATA, *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )

    def stop(self) -> int:
        """Stop as Ctrl-C would (the front door stops with it), and return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=15)
        self.stop_front_door()
        return code

    def front_door_pid(self) -> int | None:
        """HAProxy's master, if it runs (it outlives a daemon killed or stopped by SIGTERM). Its pid file is
        rewritten on every reload: a moment without one is waited out (HAProxy leaves it when it exits)."""
        pid_file = self.home / "haproxy" / "haproxy.pid"
        deadline = time.monotonic() + 2
        while not pid_file.exists() and (self.home / "haproxy").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            pid = int(pid_file.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        return pid if str(self.home).encode() in cmdline else None

    def stop_front_door(self) -> None:
        """End HAProxy by its pid if a test left it serving (a SIGKILLed daemon does)."""
        pid = self.front_door_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)


def start_daemon(
    home: Path,
    port: int | None = None,
    *,
    local_node: bool = False,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    like: Daemon | None = None,
    gateway: str | None = None,
) -> Daemon:
    """Start `strata up`; without `local_node` it places no container (a control plane alone). `env` adds
    STRATA_* settings (all others from the test's environment are dropped); `like` reuses an earlier daemon's
    addresses; `gateway` is its front door's HTTP address (a free port's otherwise)."""
    port = port or free_port()
    log = open(home.parent / f"{home.name}-daemon.log", "ab")  # noqa: SIM115 (the process owns it)
    node = "--local-node" if local_node else "--no-local-node"
    if like is not None:  # the same addresses as an earlier daemon (a restart)
        gateway, https, admin, ssh = like.gateway, like.https, like.admin, like.ssh
    else:
        http, https, admin, ssh = (f"127.0.0.1:{free_port()}" for _ in range(4))
        gateway = gateway or http
    listen = ["--api", f"127.0.0.1:{port}", "--gateway", gateway, "--https", https, "--gateway-admin", admin]
    listen += ["--ssh", ssh]
    env = env or {}
    process = subprocess.Popen([*STRATA, "up", *listen, node, *extra], env=_env(home, env), stdout=log, stderr=log)
    daemon = Daemon(home, port, process, gateway, https, admin, ssh, env)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"strata up exited with {process.returncode}: {log.name}")
        if (home / "api.sock").exists():
            try:
                with daemon.client() as client:
                    client.health()
                return daemon
            except Exception:
                pass
        time.sleep(0.05)
    daemon.stop()
    raise RuntimeError(f"strata up did not answer within {START_TIMEOUT_SECONDS}s: {log.name}")


def _env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """The test's environment without its STRATA_* settings, plus `extra` and the daemon's home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    return {**env, **extra, "STRATA_HOME": str(home)}
