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
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncssh
import websockets
from websockets.exceptions import InvalidStatus

from tenants import roles
from tenants.client import ApiError, StrataClient
from tenants.enums import MemberRole
from tui.ssh.commands import Shell, UsageError, cli_arguments, redact, shell_request
from tui.ssh.git import (
    GitRefused,
    GitRequest,
    adopt,
    environment,
    git_request,
    new_report,
    one_push,
    prepare,
    read_report,
)
from tui.ssh.throttle import Throttle
from tui.ssh.zygote import Zygote

log = logging.getLogger(__name__)
T = TypeVar("T")

HANGUP_GRACE_SECONDS = 2.0
CLOSE_TIMEOUT_SECONDS = HANGUP_GRACE_SECONDS + 3  # at stop, for the sessions to end (hang-ups and audits)
READ_CHUNK = 65536
RECHECK_SECONDS = 2.0  # how often a session's right is checked again: a member removed is cut off within it
MAX_SESSIONS_PER_KEY = 10
ZYGOTE_SOCKET = "console.sock"  # under STRATA_HOME
KEEPALIVE_SECONDS, KEEPALIVE_MISSES = 30, 3  # a client silent for 90 s is gone: its session ends

# What a hardened OpenSSH offers (ssh-audit's guide), of what asyncssh has: x25519 key exchange (alone and with
# ML-KEM, post-quantum), no finite-field or NIST-curve one; AEAD or CTR ciphers; encrypt-then-MAC SHA-2 MACs;
# no compression. The host key is ed25519 (made so), so it is the only host key algorithm.
KEX_ALGORITHMS = ["mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org"]
CIPHERS = [
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
]
MACS = ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com"]


@dataclass(frozen=True)
class Grant:
    """A session's right: who logged in, as what, and the token minted for it."""

    username: str
    tenant: str | None  # None: an operator
    token: str  # unique, unlike a row id: ending the session revokes this token and no other
    actor: str  # how the audit log names the session: its tenant, member, and key (`Principal.actor`)
    fingerprint: str  # the key it logged in with: removed, the session ends
    member: str | None  # the key's member (None: the tenant's own key, or an operator's)
    member_role: str | None  # the role it acts with (None: an operator): a change ends the session


class Access(Protocol):
    def allowed(self, username: str, fingerprint: str, peer: str) -> bool:
        """May this key log in as `username`? (A refusal is audited.)"""

    def grant(self, username: str, fingerprint: str, peer: str) -> Grant:
        """Open a session for an allowed key: mint its token."""

    def valid(self, grant: Grant) -> bool:
        """Does the session still act as it did when granted? (Not once its key or member is removed, or the
        member's role changed: the session then ends.)"""

    def end(self, grant: Grant, command: str, exit_code: int, seconds: float) -> None:
        """Revoke the session's token (if it still exists) and audit the session; never raises for a token gone."""

    def record(self, grant: Grant, action: str, tenant: str | None, detail: dict[str, Any]) -> None:
        """Audit what a session did that the API did not see whole (a `git.push`: its ref, commits, result)."""


@dataclass
class SshServer:
    acceptor: asyncssh.SSHAcceptor
    zygote: Zygote
    connections: set[asyncssh.SSHServerConnection]
    sessions: set[asyncio.Task[None]]

    async def close(self) -> None:
        """Stop listening and end every session as if its client went: commands hung up, tokens revoked, audited."""
        self.acceptor.close()
        for connection in list(self.connections):
            connection.close()
        if self.sessions:
            await asyncio.wait(self.sessions, timeout=CLOSE_TIMEOUT_SECONDS)
        await asyncio.to_thread(self.zygote.stop)


class _RedactCommands(logging.Filter):
    """asyncssh logs each exec request's command (`  Command: %s`, at INFO): logged with its secrets redacted."""

    MESSAGES = ("  Command: %s", "  Forced command override: %s")  # after the connection's context

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(record.msg, str) and record.msg.endswith(self.MESSAGES) and isinstance(args, tuple) and args:
            record.args = (redact(str(args[0])), *args[1:])
        return True


async def serve_ssh(host: str, port: int, host_key: Path, access: Access, home: Path) -> SshServer:
    """Listen on HOST:PORT; the host key is made on first start and kept (0600) at `host_key`."""
    asyncssh_log = logging.getLogger("asyncssh")
    if not any(isinstance(f, _RedactCommands) for f in asyncssh_log.filters):
        asyncssh_log.addFilter(_RedactCommands())
    if not host_key.exists():
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(host_key))
        host_key.chmod(0o600)

    throttle = Throttle()
    connections: set[asyncssh.SSHServerConnection] = set()
    sessions: set[asyncio.Task[None]] = set()

    def server() -> asyncssh.SSHServer:
        return _Server(access, throttle, connections)

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
        task = asyncio.current_task()
        assert task is not None
        sessions.add(task)
        try:
            await _run_session(process, access, home, zygote)
        finally:
            open_sessions[fingerprint] -= 1
            sessions.discard(task)

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
        kex_algs=KEX_ALGORITHMS,
        encryption_algs=CIPHERS,
        mac_algs=MACS,
        compression_algs=["none"],
    )
    return SshServer(acceptor, zygote, connections, sessions)


class _Server(asyncssh.SSHServer):
    """One per connection: authenticates it, and reports it to the throttle and the server's set."""

    def __init__(self, access: Access, throttle: Throttle, connections: set[asyncssh.SSHServerConnection]) -> None:
        self.access = access
        self.throttle = throttle
        self.connections = connections
        self.connection: asyncssh.SSHServerConnection | None = None
        self.source = ""
        self.state = "refused"  # then "starting", "trying" (auth begun), "authenticated"

    def connection_made(self, connection: asyncssh.SSHServerConnection) -> None:
        self.source = connection.get_extra_info("peername")[0]
        if not self.throttle.admit(self.source):
            connection.abort()  # before the server's version string: nothing else is sent or computed
            return
        self.connection, self.state = connection, "starting"
        self.connections.add(connection)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.connection is not None:
            self.connections.discard(self.connection)
        if self.state in ("starting", "trying"):
            self.throttle.ended(self.source, tried=self.state == "trying")

    def begin_auth(self, username: str) -> bool:
        self.state = "trying"
        return True

    def auth_completed(self) -> None:
        self.state = "authenticated"
        self.throttle.authenticated(self.source)

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        """Asked once to probe the key and once more with its signature: only checks, mints nothing."""
        assert self.connection is not None
        fingerprint = key.get_fingerprint("sha256")
        if not self.access.allowed(username, fingerprint, self.source):
            return False
        self.connection.set_extra_info(fingerprint=fingerprint)
        return True


async def _run_session(process: asyncssh.SSHServerProcess[bytes], access: Access, home: Path, zygote: Zygote) -> None:
    """Run what the client asked for; however it ends (even cancelled), revoke its token and audit it."""
    peer = process.get_extra_info("peername")[0]
    username, fingerprint = process.get_extra_info("username"), process.get_extra_info("fingerprint")
    try:  # a database write: in a thread, as `end` is, so the daemon's loop (the API, the gateway) never waits
        grant = await asyncio.to_thread(access.grant, username, fingerprint, peer)
    except PermissionError as refused:  # the key (or its member) went since the connection logged in
        log.info("SSH session of %s refused: %s", username, refused)
        process.stderr.write(b"error: this key may not log in any longer\n")
        process.exit(1)
        return
    except Exception:  # the tenant went between the login and now, or worse
        log.exception("SSH session of %s could not start", username)
        process.stderr.write(b"error: this session could not start; try again\n")
        process.exit(1)
        return
    command = process.command or ""
    started = time.monotonic()
    code = 255
    try:
        code = await _while_valid(process, access, grant, _serve(process, access, grant, home, zygote, command))
    except UsageError as usage:
        process.stderr.write(str(usage).encode())
        code = 2
    except (asyncssh.BreakReceived, asyncssh.ConnectionLost, BrokenPipeError):
        code = 255
    except Exception:
        log.exception("SSH session of %s failed", grant.username)
        code = 255
    finally:
        try:
            audited = redact(command) if command else "console"  # never a secret typed on the command line
            await asyncio.to_thread(access.end, grant, audited, code, time.monotonic() - started)
        finally:
            process.exit(code)


async def _serve(
    process: asyncssh.SSHServerProcess[bytes], access: Access, grant: Grant, home: Path, zygote: Zygote, command: str
) -> int:
    """What the session asked for, run with the session's token; its exit code."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "STRATA_HOME": str(home), "STRATA_TOKEN": grant.token}
    if command and (push := git_request(shlex.split(command), grant.tenant)) is not None:
        return await _git(process, push, grant, access, home)
    if command and (shell := shell_request(shlex.split(command), grant.tenant)) is not None:
        return await _shell(process, shell, grant, home)
    if command:
        return await _command(process, cli_arguments(shlex.split(command), grant.tenant), env)
    if process.get_terminal_type() is None:
        process.stderr.write(b"the console needs a terminal: ssh -t ...\n")
        return 2
    return await _console(process, env, zygote)


async def _while_valid(
    process: asyncssh.SSHServerProcess[bytes], access: Access, grant: Grant, work: Coroutine[Any, Any, int]
) -> int:
    """`work`'s exit code, unless the session's right goes first (its member removed or its role changed: checked
    every `RECHECK_SECONDS`): then `work` is cancelled, the client told, and the code is 1."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            await asyncio.wait([task], timeout=RECHECK_SECONDS)
            if not task.done() and not await asyncio.to_thread(access.valid, grant):
                task.cancel()
                process.stderr.write(b"\r\nstrata: your access to this tenant changed; this session ends\r\n")
                return 1
        return task.result()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _until_gone(process: asyncssh.SSHServerProcess[bytes], work: Awaitable[T]) -> T:
    """`work`'s result, unless the client goes first: then `work` is cancelled and ConnectionLost raised.

    The client going is the channel closing, not the end of its input: a client may send EOF at once
    (`ssh -n`, input from /dev/null) and go much later, and after an EOF asyncssh's reads say nothing more."""
    task, gone = asyncio.ensure_future(work), asyncio.ensure_future(process.channel.wait_closed())
    try:
        await asyncio.wait([task, gone], return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            raise asyncssh.ConnectionLost("the client went away")
        return task.result()
    finally:
        await _cancel(task, gone)


async def _cancel(*tasks: asyncio.Future[Any]) -> None:
    """Cancel and collect `tasks`: none outlives its session, and no failure of one is left unretrieved."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _command(process: asyncssh.SSHServerProcess[bytes], arguments: list[str], env: dict[str, str]) -> int:
    """`strata ARGUMENTS` with the session's token, the client's input fed to it (`registries add ...
    --password-stdin`) and its output relayed; hung up if the client goes."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strata",
        *arguments,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )

    async def pump(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
        while chunk := await source.read(READ_CHUNK):
            sink.write(chunk)

    async def feed() -> None:
        """The client's input until its end, which ends the command's (a command that reads none ignores it)."""
        assert child.stdin is not None  # piped above
        try:
            while chunk := await process.stdin.read(READ_CHUNK):
                child.stdin.write(chunk)
                await child.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the command ended without reading it all
        finally:
            child.stdin.close()

    async def finished() -> int:
        assert child.stdout is not None and child.stderr is not None  # both piped above
        feeding = asyncio.ensure_future(feed())
        try:
            await asyncio.gather(pump(child.stdout, process.stdout), pump(child.stderr, process.stderr))
            return await child.wait()
        finally:
            await _cancel(feeding)

    try:
        return await _until_gone(process, finished())
    finally:
        if child.returncode is None:
            _hang_up(child.pid)
            await _reap(child)


async def _git(
    process: asyncssh.SSHServerProcess[bytes], request: GitRequest, grant: Grant, access: Access, home: Path
) -> int:
    """`git receive-pack` (a push, which the repository's hook builds and deploys) or `git upload-pack` (a clone,
    a fetch) on the app's repository; one push per app at a time (see `one_push`)."""
    try:
        with one_push(request, home):
            repository = await asyncio.to_thread(prepare, request, home, grant.token)
            return await _git_service(process, request, repository, grant, access, home)
    except GitRefused as refused:
        process.stderr.write(f"error: {refused}\n".encode())
        return 1


async def _git_service(
    process: asyncssh.SSHServerProcess[bytes],
    request: GitRequest,
    repository: Path,
    grant: Grant,
    access: Access,
    home: Path,
) -> int:
    """The git service, its bytes relayed both ways as they come (no terminal); hung up, hook and build included,
    if the client goes. What the hook decided for each ref is audited (`git.push`)."""
    report = await asyncio.to_thread(new_report, home)
    child = await asyncio.create_subprocess_exec(
        "git",
        request.service,
        str(repository),
        env=environment(request, home, grant.token, report, process.env.get("GIT_PROTOCOL")),
        cwd=repository,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None  # all piped above
    stdin, stdout, stderr = child.stdin, child.stdout, child.stderr

    async def send() -> None:
        try:
            while data := await process.stdin.read(READ_CHUNK):
                stdin.write(data)
                await stdin.drain()
            stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # git ended first: its exit code says why

    async def pump(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
        while chunk := await source.read(READ_CHUNK):
            sink.write(chunk)
            await sink.drain()

    async def finished() -> int:
        await asyncio.gather(pump(stdout, process.stdout), pump(stderr, process.stderr))
        return await child.wait()

    sending = asyncio.ensure_future(send())
    try:
        return await _until_gone(process, finished())
    finally:
        await _cancel(sending)
        if child.returncode is None:
            _hang_up(child.pid)
            await _reap(child)
        try:
            await asyncio.to_thread(_audit_push, access, grant, request, report, home)
        except Exception:
            log.exception("the push of %s/%s could not be audited", request.tenant, request.app)


def _audit_push(access: Access, grant: Grant, request: GitRequest, report: Path, home: Path) -> None:
    """Audit each ref the hook decided on, and stamp the repository with the app the push made or updated."""
    for decision in read_report(report):
        access.record(grant, "git.push", request.tenant, {"app": request.app, **decision})
    if request.push:
        adopt(request, home, grant.token)


async def _console(process: asyncssh.SSHServerProcess[bytes], env: dict[str, str], zygote: Zygote) -> int:
    """The console, forked by the zygote onto a pseudo-terminal that is its controlling terminal (so it gets
    SIGWINCH); no COLUMNS/LINES in its environment, so it asks the terminal for its size. When the client goes,
    it is hung up (SIGHUP), then killed."""
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
                return  # a terminal has no end of file: what was typed stays for the console to read
            os.write(master, data)

    async def exit_code() -> int:
        line = await reader.readline()  # "exit CODE"
        return int(line.split()[1]) if line.startswith(b"exit ") else 255

    typing, ended = asyncio.ensure_future(keyboard()), asyncio.ensure_future(exit_code())
    try:
        return await _until_gone(process, asyncio.shield(ended))
    except (asyncssh.ConnectionLost, asyncio.CancelledError):  # the client went, or the session's right did
        _signal_group(pid, signal.SIGHUP)
        try:
            await asyncio.wait_for(asyncio.shield(ended), HANGUP_GRACE_SECONDS)
        except TimeoutError:
            _signal_group(pid, signal.SIGKILL)
        raise
    finally:
        await _cancel(typing, ended)
        loop.remove_reader(master)
        os.close(master)
        writer.close()


class _NotServed(Exception):
    """What a `psql SERVICE` names is not a service it can open; the message says why."""


def _check_service(client: StrataClient, shell: Shell) -> None:
    """Raise `_NotServed` unless `shell.app` is one of the tenant's services, ready: said plainly here, rather than
    as the engine's failure to run psql in a web app's container. Whether the session may see it at all is the
    API's answer to the session's token (another tenant's is out of its reach, as any of its apps)."""
    try:
        service = client.service(shell.tenant, shell.app)
    except ApiError as exc:
        if exc.status != 404:
            raise
        names = [s.name for s in client.services(shell.tenant)]  # its own refusal if the tenant is not there
        some = f"its services are: {', '.join(names)}" if names else "it has none"
        raise _NotServed(f"{shell.tenant} has no service named {shell.app}; {some}") from None
    if not service.ready:
        why = f" ({service.status})" if service.status else ""
        raise _NotServed(f"the service {shell.tenant}/{shell.app} is not ready{why}; try again in a moment")


async def _shell(process: asyncssh.SSHServerProcess[bytes], shell: Shell, grant: Grant, home: Path) -> int:
    """Through the control API's exec WebSocket, with the session's token: the API decides what it reaches (a
    member's role that may not is told why here first: the socket's refusal says only 403)."""
    socket = home / "api.sock"
    if grant.member_role is not None and not roles.allows(MemberRole(grant.member_role), *roles.EXEC):
        why = roles.refusal("you are", shell.tenant, MemberRole(grant.member_role), *roles.EXEC, "a shell")
        process.stderr.write(f"error: {why}\n".encode())
        return 1

    def instances() -> list[tuple[str, bool]]:
        with StrataClient(socket=socket, token=grant.token) as client:
            if shell.service:
                _check_service(client, shell)
            return [(i.id, i.state == "ready") for i in client.instances(shell.tenant, shell.app)]

    try:
        found = await asyncio.to_thread(instances)
    except ApiError as exc:
        process.stderr.write(f"error: {exc.message}\n".encode())
        return 1
    except _NotServed as refused:
        process.stderr.write(f"error: {refused}\n".encode())
        return 1
    ids = [id for id, _ in found]
    if shell.instance is not None and shell.instance not in ids:
        some = f"its instances are: {', '.join(ids)}" if ids else "it has none"
        process.stderr.write(f"error: no instance {shell.instance} of {shell.app}; {some}\n".encode())
        return 1
    instance = shell.instance or next((id for id, ready in found if ready), None)
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
    except InvalidStatus as refused:  # the API refuses before the socket opens (it answers 403)
        process.stderr.write(f"error: the shell was refused ({refused.response.status_code})\n".encode())
        return 1
    except websockets.ConnectionClosed as closed:
        reason = {4401: "not allowed", 4404: f"no instance {instance} of {shell.tenant}/{shell.app}"}
        process.stderr.write(f"error: {reason.get(closed.code, closed.reason or 'the shell ended')}\n".encode())
        return 1


async def _relay(process: asyncssh.SSHServerProcess[bytes], ws: Any, tty: bool) -> int:
    """Relay until the command exits (its code) or the client goes (ConnectionLost: closing the socket makes
    the API end the command). The client's EOF ends the command's input; with a terminal, as with OpenSSH, it
    ends nothing: the command reads on what was typed before it, and the session lasts until the command exits."""

    async def keyboard() -> None:
        while True:
            try:
                data = await process.stdin.read(READ_CHUNK)
            except asyncssh.TerminalSizeChanged as change:
                await ws.send(json.dumps({"resize": [change.width, change.height]}))
                continue
            if not data:
                break
            await ws.send(data)
        if not tty:
            await ws.send(json.dumps({"eof": True}))

    async def output() -> int:
        async for message in ws:
            if isinstance(message, str):
                return int(json.loads(message).get("exit", 255))
            (process.stderr if message[:1] == b"\x02" else process.stdout).write(message[1:])
        return 255

    typing = asyncio.ensure_future(keyboard())
    try:
        return await _until_gone(process, output())
    finally:
        await _cancel(typing)


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
