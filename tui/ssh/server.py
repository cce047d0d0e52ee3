"""The SSH server: public keys only, each session with a token minted for it and revoked when it ends.

`ssh -p 2222 admin@HOST` (an operator's key) or `ssh -p 2222 acme@HOST` (a key of tenant acme) opens the
console on a pseudo-terminal; with a command, it runs that command (see `commands`). The server holds no
credential of its own: `Access` (given by the daemon) checks the key and mints the session's token, and every
action then goes through the control API with that token.
"""

import asyncio
import fcntl
import json
import logging
import os
import shlex
import signal
import struct
import sys
import termios
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import asyncssh
import websockets

from tenants.client import ApiError, StrataClient
from tui.ssh.commands import Shell, UsageError, cli_arguments, shell_request
from tui.ssh.zygote import Zygote

log = logging.getLogger(__name__)

HANGUP_GRACE_SECONDS = 2.0
READ_CHUNK = 65536
MAX_SESSIONS_PER_KEY = 10
ZYGOTE_SOCKET = "console.sock"  # under STRATA_HOME
KEEPALIVE_SECONDS, KEEPALIVE_MISSES = 30, 3  # a client silent for 90 s is gone: its session ends


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


@dataclass
class SshServer:
    acceptor: asyncssh.SSHAcceptor
    zygote: Zygote

    def close(self) -> None:
        self.acceptor.close()
        self.zygote.stop()


async def serve_ssh(host: str, port: int, host_key: Path, access: Access, home: Path) -> SshServer:
    """Listen on HOST:PORT; the host key is made on first start and kept (0600) at `host_key`."""
    if not host_key.exists():
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(host_key))
        host_key.chmod(0o600)

    def server() -> asyncssh.SSHServer:
        return _Server(access)

    open_sessions: Counter[str] = Counter()
    zygote = Zygote(home / ZYGOTE_SOCKET)
    await asyncio.to_thread(zygote.ensure_running)

    async def session(process: asyncssh.SSHServerProcess[bytes]) -> None:
        fingerprint = process.get_extra_info("fingerprint")
        if open_sessions[fingerprint] >= MAX_SESSIONS_PER_KEY:
            process.stderr.write(f"this key has {MAX_SESSIONS_PER_KEY} sessions open already\n".encode())
            process.exit(1)
            return
        open_sessions[fingerprint] += 1
        try:
            await _run_session(process, access, home, zygote)
        finally:
            open_sessions[fingerprint] -= 1

    acceptor = await asyncssh.create_server(
        server,
        host,
        port,
        server_host_keys=[str(host_key)],
        process_factory=session,
        encoding=None,
        allow_scp=False,
        agent_forwarding=False,
        x11_forwarding=False,
        keepalive_interval=KEEPALIVE_SECONDS,
        keepalive_count_max=KEEPALIVE_MISSES,
    )
    return SshServer(acceptor, zygote)


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


async def _run_session(process: asyncssh.SSHServerProcess[bytes], access: Access, home: Path, zygote: Zygote) -> None:
    peer = process.get_extra_info("peername")[0]
    grant = access.grant(process.get_extra_info("username"), process.get_extra_info("fingerprint"), peer)
    command = process.command or ""
    started = time.monotonic()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "STRATA_HOME": str(home), "STRATA_TOKEN": grant.token}
    code = 1
    try:
        if command and (shell := shell_request(shlex.split(command), grant.tenant)) is not None:
            code = await _shell(process, shell, grant, home)
        elif command:
            code = await _command(process, shlex.split(command), grant, env)
        elif process.get_terminal_type() is None:
            process.stderr.write(b"the console needs a terminal: ssh -t ...\n")
            code = 2
        else:
            code = await _console(process, env, zygote)
    except UsageError as usage:
        process.stderr.write(str(usage).encode())
        code = 2
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


async def _console(process: asyncssh.SSHServerProcess[bytes], env: dict[str, str], zygote: Zygote) -> int:
    """The console, forked by the zygote onto a pseudo-terminal that is its controlling terminal (so it gets
    SIGWINCH); no COLUMNS/LINES in its environment, so it asks the terminal for its size."""
    master, slave = os.openpty()
    _resize(master, process.get_terminal_size())
    try:
        connection = await asyncio.to_thread(
            zygote.open_session, slave, {**env, "TERM": process.get_terminal_type() or "xterm-256color"}
        )
    finally:
        os.close(slave)
    reader, writer = await asyncio.open_unix_connection(sock=connection)
    pid = int(await reader.readline())
    loop = asyncio.get_running_loop()

    def output() -> None:
        try:
            data = os.read(master, READ_CHUNK)
        except OSError:
            data = b""
        if data:
            process.stdout.write(data)

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

    async def exit_code() -> int:
        line = await reader.readline()  # "exit CODE"
        return int(line.split()[1]) if line.startswith(b"exit ") else 255

    typing, ended = asyncio.ensure_future(keyboard()), asyncio.ensure_future(exit_code())
    try:
        await asyncio.wait([typing, ended], return_when=asyncio.FIRST_COMPLETED)
        if not ended.done():  # the client went away first: hang up, then insist
            _signal_group(pid, signal.SIGHUP)
            try:
                await asyncio.wait_for(asyncio.shield(ended), HANGUP_GRACE_SECONDS)
            except TimeoutError:
                _signal_group(pid, signal.SIGKILL)
        return await ended
    finally:
        typing.cancel()
        loop.remove_reader(master)
        os.close(master)
        writer.close()


async def _shell(process: asyncssh.SSHServerProcess[bytes], shell: Shell, grant: Grant, home: Path) -> int:
    """Through the control API's exec WebSocket, with the session's token: the API decides what it reaches."""
    socket = home / "api.sock"

    def instances() -> list[str]:
        with StrataClient(socket=socket, token=grant.token) as client:
            return [i.id for i in client.instances(shell.tenant, shell.app) if i.state == "ready"]

    try:
        ready = await asyncio.to_thread(instances)
    except ApiError as exc:
        process.stderr.write(f"error: {exc.message}\n".encode())
        return 1
    instance = shell.instance or (ready[0] if ready else None)
    if instance is None:
        process.stderr.write(f"error: {shell.tenant}/{shell.app} has no ready instance\n".encode())
        return 1
    tty = process.get_terminal_type() is not None
    with StrataClient(socket=socket, token=grant.token) as client:
        target = client.exec_target(shell.tenant, shell.app, instance, shell.command, tty=tty)
    try:
        async with websockets.unix_connect(
            str(target.socket), target.url, additional_headers=target.headers, max_size=None
        ) as ws:
            if tty:
                width, height, _, _ = process.get_terminal_size()
                await ws.send(json.dumps({"resize": [width, height]}))
            return await _relay(process, ws, tty)
    except websockets.ConnectionClosed as closed:
        reason = {4401: "not allowed", 4404: f"no instance {instance} of {shell.tenant}/{shell.app}"}
        process.stderr.write(f"error: {reason.get(closed.code, closed.reason or 'the shell ended')}\n".encode())
        return 1


async def _relay(process: asyncssh.SSHServerProcess[bytes], ws: Any, tty: bool) -> int:
    async def keyboard() -> None:
        while True:
            try:
                data = await process.stdin.read(READ_CHUNK)
            except asyncssh.TerminalSizeChanged as change:
                await ws.send(json.dumps({"resize": [change.width, change.height]}))
                continue
            if not data:
                if tty:
                    return  # the client went away: closing the socket ends the command
                await ws.send(json.dumps({"eof": True}))
                await asyncio.Event().wait()  # piped input ended; wait for the output to end
            await ws.send(data)

    async def output() -> int:
        async for message in ws:
            if isinstance(message, str):
                return int(json.loads(message).get("exit", 255))
            (process.stderr if message[:1] == b"\x02" else process.stdout).write(message[1:])
        return 255

    typing, reading = asyncio.ensure_future(keyboard()), asyncio.ensure_future(output())
    try:
        await asyncio.wait([typing, reading], return_when=asyncio.FIRST_COMPLETED)
        if reading.done():
            return reading.result()
        await ws.close()  # the client went away: the API ends the command when its socket closes
        return 255
    finally:
        typing.cancel()
        reading.cancel()


def _resize(fd: int, size: tuple[int, int, int, int]) -> None:
    width, height, pixwidth, pixheight = size
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height or 24, width or 80, pixwidth, pixheight))


def _signal_group(pid: int, signum: int) -> None:
    """Signal a session's process group (it leads its own session, so its group is its PID)."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


def _hang_up(pid: int) -> None:
    """SIGHUP, as a terminal hang-up would."""
    _signal_group(pid, signal.SIGHUP)


async def _reap(child: asyncio.subprocess.Process) -> int:
    try:
        return await asyncio.wait_for(child.wait(), HANGUP_GRACE_SECONDS)
    except TimeoutError:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return await child.wait()
