"""Reaching a guest over SSH (asyncssh): the platform's client key, per-VM identities, and giving a restored
clone its own identity (host key, hostname, clock) in place of its template's."""

import asyncio
import secrets
import shlex
import time
from pathlib import Path

import asyncssh
from asyncssh import SSHClientConnection, SSHKey

from hosting.iaas.driver import HypervisorError, Identity

SSH_USER = "root"
CONNECT_ATTEMPT_SECONDS = 5


def client_key(path: Path, comment: str = "strata-platform") -> SSHKey:
    """The platform's SSH key for its guests, made on first use (0600); guests accept only it."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        asyncssh.generate_private_key("ssh-ed25519", comment=comment).write_private_key(str(path))
        path.chmod(0o600)
    return asyncssh.read_private_key(str(path))


def new_identity(hostname: str, client: SSHKey) -> Identity:
    host_key = asyncssh.generate_private_key("ssh-ed25519", comment=hostname)
    return Identity(
        hostname=hostname,
        host_key=host_key.export_private_key().decode(),
        authorized_key=client.export_public_key().decode().strip(),
    )


def host_public_key(identity: Identity) -> str:
    return asyncssh.import_private_key(identity.host_key).export_public_key().decode().strip()


async def connect(port: int, identity: Identity, client: SSHKey, timeout: float) -> SSHClientConnection:
    """Log in to the guest on 127.0.0.1:`port`, accepting only the host key of `identity`. Retried until
    `timeout`: QEMU accepts the TCP connection before the guest's sshd listens."""
    known = asyncssh.import_known_hosts(f"[127.0.0.1]:{port} {host_public_key(identity)}\n")
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await asyncssh.connect(
                "127.0.0.1",
                port,
                username=SSH_USER,
                client_keys=[client],
                known_hosts=known,
                connect_timeout=CONNECT_ATTEMPT_SECONDS,
                keepalive_interval=10,
                keepalive_count_max=3,
            )
        except asyncssh.HostKeyNotVerifiable:
            raise HypervisorError(f"the guest on port {port} shows a host key that is not its own") from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise HypervisorError(f"no SSH on 127.0.0.1:{port} after {timeout:.0f} s ({exc})") from None
            await asyncio.sleep(0.1)


REBIRTH = """set -e
umask 077
cat > /etc/ssh/ssh_host_ed25519_key.new
mv /etc/ssh/ssh_host_ed25519_key.new /etc/ssh/ssh_host_ed25519_key
ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key > /etc/ssh/ssh_host_ed25519_key.pub
hostname "$1"; echo "$1" > /etc/hostname
date -s "@$2" > /dev/null
printf %s "$3" > /dev/urandom
kill -HUP "$(cat /run/sshd.pid)"
"""


async def rebirth(connection: SSHClientConnection, identity: Identity) -> None:
    """Make a clone restored from a snapshot its own machine: a new SSH host key (sshd reloads it; this
    connection stays up), its hostname, the time now (its clock stopped when the snapshot was taken), and
    fresh randomness from the host mixed into its random pool, which it shares with every clone otherwise
    (kernels with a vmgenid driver reseed by themselves too: the device's id changes on restore)."""
    arguments = [identity.hostname, str(int(time.time())), secrets.token_hex(64)]
    command = shlex.join(["sh", "-c", REBIRTH, "rebirth", *arguments])
    result = await connection.run(command, input=identity.host_key, check=False)
    if result.exit_status != 0:
        raise HypervisorError(f"giving {identity.hostname} its identity failed: {result.stderr!s}")
