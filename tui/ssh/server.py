"""The SSH server: public keys only, each session with a token minted for it and revoked when it ends.

`ssh -p 2222 admin@HOST` (an operator's key) or `ssh -p 2222 acme@HOST` (a key of tenant acme) opens the
console on a pseudo-terminal; with a command, it runs that command (see `commands`). The server holds no
credential of its own: `Access` (given by the daemon) checks the key and mints the session's token, and every
action then goes through the control API with that token.
"""

import asyncio
import fcntl
import logging
import os
import shlex
import signal
import struct
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import asyncssh

from tui.ssh.commands import UsageError, cli_arguments

log = logging.getLogger(__name__)

HANGUP_GRACE_SECONDS = 2.0
READ_CHUNK = 65536


@dataclass(frozen=True)
class Grant:
    """A session's right: who logged in, as what, and the token minted for it."""

    username: str
    tenant: str | None  # None: an operator
    token: str
    token_id: int


class Access(Protocol):
    def allowed(self, username: str, fingerprint: str, peer: str) -> bool:
        """May this key log in as `username`? (A refusal is audited.)"""

    def grant(self, username: str, fingerprint: str, peer: str) -> Grant:
        """Open a session for an allowed key: mint its token."""

    def end(self, grant: Grant, peer: str, command: str, exit_code: int, seconds: float) -> None:
        """Revoke the session's token and audit the session."""


async def serve_ssh(host: str, port: int, host_key: Path, access: Access, home: Path) -> asyncssh.SSHAcceptor:
    """Listen on HOST:PORT; the host key is made on first start and kept (0600) at `host_key`."""
    if not host_key.exists():
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(host_key))
        host_key.chmod(0o600)

    def server() -> asyncssh.SSHServer:
        return _Server(access)

    async def session(process: asyncssh.SSHServerProcess[bytes]) -> None:
        await _run_session(process, access, home)

    return await asyncssh.create_server(
        server,
        host,
        port,
        server_host_keys=[str(host_key)],
        process_factory=session,
        encoding=None,
        allow_scp=False,
        agent_forwarding=False,
        x11_forwarding=False,
    )


class _Server(asyncssh.SSHServer):
    def __init__(self, access: Access) -> None:
        self.access = access
        self.connection: asyncssh.SSHServerConnection | None = None

    def connection_made(self, connection: asyncssh.SSHServerConnection) -> None:
        self.connection = connection

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        """Asked once to probe the key and once more with its signature: only checks, mints nothing."""
        assert self.connection is not None
        peer = self.connection.get_extra_info("peername")[0]
        fingerprint = key.get_fingerprint("sha256")
        if not self.access.allowed(username, fingerprint, peer):
            return False
        self.connection.set_extra_info(fingerprint=fingerprint)
        return True


async def _run_session(process: asyncssh.SSHServerProcess[bytes], access: Access, home: Path) -> None:
    peer = process.get_extra_info("peername")[0]
    grant = access.grant(process.get_extra_info("username"), process.get_extra_info("fingerprint"), peer)
    command = process.command or ""
    started = time.monotonic()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "STRATA_HOME": str(home), "STRATA_TOKEN": grant.token}
    code = 1
    try:
        if command:
            code = await _command(process, shlex.split(command), grant, env)
        elif process.get_terminal_type() is None:
            process.stderr.write(b"the console needs a terminal: ssh -t ...\n")
            code = 2
        else:
            code = await _console(process, env)
    except (asyncssh.BreakReceived, asyncssh.ConnectionLost, BrokenPipeError):
        code = 255
    except Exception:
        log.exception("SSH session of %s failed", grant.username)
        code = 255
    finally:
        access.end(grant, peer, command or "console", code, time.monotonic() - started)
        process.exit(code)


async def _command(
    process: asyncssh.SSHServerProcess[bytes], words: list[str], grant: Grant, env: dict[str, str]
) -> int:
    try:
        arguments = cli_arguments(words, grant.tenant)
    except UsageError as usage:
        process.stderr.write(str(usage).encode())
        return 2
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strata",
        *arguments,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )

    async def pump(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
        while chunk := await source.read(READ_CHUNK):
            sink.write(chunk)

    pumps = asyncio.gather(pump(child.stdout, process.stdout), pump(child.stderr, process.stderr))  # type: ignore[arg-type]
    gone = asyncio.ensure_future(process.stdin.read())  # EOF or the client going away
    try:
        await asyncio.wait([pumps, gone], return_when=asyncio.FIRST_COMPLETED)
        if not pumps.done() and gone.done() and process.is_closing():
            raise asyncssh.ConnectionLost("client went away")
        await pumps
        return await child.wait()
    finally:
        gone.cancel()
        if child.returncode is None:
            _hang_up(child.pid)
            await _reap(child)


async def _console(process: asyncssh.SSHServerProcess[bytes], env: dict[str, str]) -> int:
    """The console in its own process on a pseudo-terminal that is its controlling terminal (so it gets
    SIGWINCH); no COLUMNS/LINES in its environment, so it asks the terminal for its size."""
    master, slave = os.openpty()
    _resize(master, process.get_terminal_size())
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tui",
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env, "TERM": process.get_terminal_type() or "xterm-256color"},
        preexec_fn=lambda: _take_controlling_terminal(slave),
    )
    os.close(slave)
    loop = asyncio.get_running_loop()
    ended = loop.create_future()

    def output() -> None:
        try:
            data = os.read(master, READ_CHUNK)
        except OSError:
            data = b""
        if data:
            process.stdout.write(data)
        elif not ended.done():
            ended.set_result(None)

    loop.add_reader(master, output)

    async def keyboard() -> None:
        while True:
            try:
                data = await process.stdin.read(READ_CHUNK)
            except asyncssh.TerminalSizeChanged as change:
                _resize(master, (change.width, change.height, change.pixwidth, change.pixheight))
                continue
            if not data:
                return
            os.write(master, data)

    typing = asyncio.ensure_future(keyboard())
    try:
        await asyncio.wait([typing, ended], return_when=asyncio.FIRST_COMPLETED)
        if typing.done() and child.returncode is None:  # the client went away first
            _hang_up(child.pid)
        return await _reap(child)
    finally:
        typing.cancel()
        loop.remove_reader(master)
        os.close(master)


def _take_controlling_terminal(tty: int) -> None:
    """In the child: a session of its own whose controlling terminal is the pty (so SIGWINCH reaches it)."""
    os.setsid()
    fcntl.ioctl(tty, termios.TIOCSCTTY, 0)


def _resize(fd: int, size: tuple[int, int, int, int]) -> None:
    width, height, pixwidth, pixheight = size
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height or 24, width or 80, pixwidth, pixheight))


def _hang_up(pid: int) -> None:
    """SIGHUP to the session's process group (it is its own session), as a terminal hang-up would."""
    try:
        os.killpg(pid, signal.SIGHUP)
    except ProcessLookupError:
        pass


async def _reap(child: asyncio.subprocess.Process) -> int:
    try:
        return await asyncio.wait_for(child.wait(), HANGUP_GRACE_SECONDS)
    except TimeoutError:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return await child.wait()
