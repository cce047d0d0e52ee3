"""A fork server for console sessions: one process that has imported the console once, and forks a copy per
SSH session — a session starts in a fraction of the time and shares its memory copy-on-write.

Protocol, over a unix socket: the SSH server sends one message with the session's pty (its file descriptor,
by SCM_RIGHTS) and its environment as JSON; the zygote answers `PID\\n` when the console runs, then
`exit CODE\\n` when it ends.

It runs as `python -m tui.ssh SOCKET` (`__main__.py`): the package imports this module, so running it as
`-m tui.ssh.zygote` would run a second copy of it.
"""

import fcntl
import json
import os
import socket
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

from tenants.client import StrataClient
from tui.app import StrataConsole  # imported here, before any fork: that is the point
from tui.dao import ConsoleData

MAX_MESSAGE = 64 * 1024
PARENT_CHECK_SECONDS = 1.0


def serve(path: str) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(64)
    server.settimeout(PARENT_CHECK_SECONDS)
    parent = os.getppid()
    while True:
        try:
            connection, _ = server.accept()
        except TimeoutError:
            if os.getppid() != parent:  # the daemon is gone (even killed): so is its fork server
                return
            continue
        connection.settimeout(None)
        try:
            message, fds, _, _ = socket.recv_fds(connection, MAX_MESSAGE, 1)
            if not fds:
                connection.close()
                continue
            env = json.loads(message)
        except (OSError, ValueError):
            connection.close()
            continue
        pid = os.fork()
        if pid == 0:
            server.close()
            connection.close()
            _console(fds[0], env)  # never returns
        os.close(fds[0])
        connection.sendall(f"{pid}\n".encode())
        threading.Thread(target=_report_exit, args=(pid, connection), daemon=True).start()


def _report_exit(pid: int, connection: socket.socket) -> None:
    _, status = os.waitpid(pid, 0)
    try:
        connection.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
    except OSError:
        pass
    connection.close()


def _console(tty: int, env: dict[str, str]) -> None:
    """In the forked child: the pty becomes this new session's controlling terminal and its stdio."""
    code = 1
    try:
        os.setsid()
        fcntl.ioctl(tty, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(tty, fd)
        os.close(tty)
        os.environ.clear()
        os.environ.update(env)
        sys.stdin, sys.stdout, sys.stderr = (
            open(fd, mode, closefd=False) for fd, mode in ((0, "r"), (1, "w"), (2, "w"))
        )  # noqa: SIM115
        with StrataClient(socket=Path(env["STRATA_HOME"]) / "api.sock", token=env["STRATA_TOKEN"]) as client:
            StrataConsole(ConsoleData(client)).run()
        code = 0
    finally:
        os._exit(code)


class Zygote:
    """The SSH server's handle on its fork server: started on demand, restarted if it died."""

    START_TIMEOUT_SECONDS = 30

    def __init__(self, path: Path) -> None:
        self.path = path
        self.process: subprocess.Popen[bytes] | None = None

    def ensure_running(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.path.unlink(missing_ok=True)
        self.process = subprocess.Popen([sys.executable, "-m", "tui.ssh", str(self.path)], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.START_TIMEOUT_SECONDS
        while not self.path.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise OSError(f"the console fork server did not start (exit {self.process.poll()})")
            time.sleep(0.02)

    def open_session(self, tty: int, env: dict[str, str]) -> socket.socket:
        self.ensure_running()
        return send(str(self.path), tty, env)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.path.unlink(missing_ok=True)


def send(path: str, tty: int, env: dict[str, str]) -> socket.socket:
    """The SSH server's side: hand over a session; read `PID` then `exit CODE` from the returned socket."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(path)
    socket.send_fds(connection, [json.dumps(env).encode()], [tty])
    return connection
