"""Logging in to a remote host over SSH (asyncssh): with the platform's key for remote hosts, accepting only the
host key recorded for it, and each way it can fail said in words an operator acts on.

The key pinned is the one given when the host is added (`--host-key`), else the one the host shows then (trust on
first use, as `ssh` asks for): it is recorded with the node, and every later connection must show it, so a host
reinstalled or a machine in the middle is refused, never trusted quietly."""

import asyncio
from pathlib import Path

import asyncssh
from asyncssh import SSHClientConnection, SSHKey

from hosting.iaas.guest_ssh import client_key
from tenants.ssh_targets import SshTarget, fingerprint

CONNECT_SECONDS = 10.0
KEEPALIVE_SECONDS = 2  # a host gone silent (a cut network) is known within three of these: meanwhile a docker call
# to it waits, and with it the reconciler's pass
KEEPALIVE_COUNT = 3


class HostUnreachable(Exception):
    """The host cannot be reached, or did not let the platform in; the message says why and what to do."""


class HostKeyMismatch(HostUnreachable):
    """The host shows another key than the one recorded: refused until the operator says it is right."""


def host_client_key(path: Path) -> SSHKey:
    """The platform's key for remote hosts (`STRATA_HOME/host_client_key`, 0600, made on first use): one of its
    own, apart from the key its VM guests accept, so hosts can be given it, and it can be replaced, alone."""
    return client_key(path, comment="strata-hosts")


def public_key(client: SSHKey) -> str:
    """The line to put in the host's `~USER/.ssh/authorized_keys`."""
    return client.export_public_key().decode().strip()


async def shown_key(target: SshTarget) -> str:
    """The host key `target` shows, without logging in (OpenSSH's one line, no comment)."""
    try:
        shown = asyncssh.get_server_host_key(target.host, target.port, config=None)
        key = await asyncio.wait_for(shown, CONNECT_SECONDS)
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise HostUnreachable(f"cannot reach {target}: {_reason(exc)}") from None
    if key is None:
        raise HostUnreachable(f"{target} showed no host key")
    return " ".join(key.export_public_key().decode().split()[:2])


async def login(target: SshTarget, client: SSHKey, host_key: str) -> SSHClientConnection:
    """A connection to `target` that showed `host_key` and accepted `client`."""
    pinned = asyncssh.import_public_key(host_key)
    try:
        return await asyncssh.connect(
            target.host,
            target.port,
            username=target.user,
            client_keys=[client],
            known_hosts=([pinned], [], []),
            config=None,
            agent_path=None,
            connect_timeout=CONNECT_SECONDS,
            keepalive_interval=KEEPALIVE_SECONDS,
            keepalive_count_max=KEEPALIVE_COUNT,
        )
    except asyncssh.HostKeyNotVerifiable:
        shown = await shown_key(target)
        raise HostKeyMismatch(
            f"{target} shows host key {fingerprint(shown)}, not the {fingerprint(host_key)} "
            "recorded for it: the host was reinstalled, or another machine answers in its place; if the new key is "
            "right, remove the node and add it again (with --host-key)"
        ) from None
    except asyncssh.PermissionDenied:
        raise HostUnreachable(
            f"{target} refused the platform's key; add it to ~{target.user}/.ssh/authorized_keys there "
            f"(`strata nodes ssh-key` prints it): {public_key(client)}"
        ) from None
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise HostUnreachable(f"cannot reach {target}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_SECONDS:.0f} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
