"""Rotating a managed PostgreSQL's credentials with no failed request of the apps bound to it.

PostgreSQL gives a role one password, so a rotation uses two logins: a new one is made (a member of the
owner role `services.USERNAME`, acting as it, so what it creates belongs to the owner), the bound apps are given
it (a new revision each, rolled out as any deploy: the old instances keep serving, and connecting, meanwhile),
and the login they had is retired only once none of their old instances is left: it can log in no more, its
sessions are ended, and it is dropped (the owner itself is only barred from logging in).

The roles are changed by psql in the service's container, over its Unix socket as the superuser (peer:
`docker exec` runs as postgres). A password reaches the server as a SCRAM-SHA-256 verifier made here, as libpq's
`PQencryptPasswordConn` makes it: the password is in no SQL text, argument or log of the server.
"""

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import Engine
from sqlmodel import Session

from hosting.paas.nodes import NodePool
from hosting.paas.runtime import EngineError, ExecSession, NodeRuntime
from tenants import db, services
from tenants.errors import Conflict, Unavailable
from tenants.models import Instance
from tenants.schemas import RotationRead
from tenants.secrets import SecretBox
from tenants.tenancy import get_tenant

log = logging.getLogger(__name__)
T = TypeVar("T")

SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)
ROLL_SECONDS, ROLL_POLL_SECONDS = 120.0, 0.5  # how long a rotation waits for the bound apps to roll
REAPPLY_SECONDS = 120.0  # how long the logins' reapplying waits for a restored service to start
REAPPLY_ROUNDS = 3
PSQL = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-", "-d"]  # and the database
OUTPUT_LIMIT = 2000  # bytes of psql's output kept for an error
EXIT_SECONDS = 5.0


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """`SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY` (RFC 5802, RFC 7677), what PostgreSQL stores. The
    password is taken as it is: SASLprep changes nothing in the ASCII ones generated here."""
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    encoded = (base64.b64encode(part).decode() for part in (salt, stored_key, server_key))
    return "SCRAM-SHA-256${}:{}${}:{}".format(iterations, *encoded)


def add_login_sql(login: str, password: str) -> str:
    """Make `login` with `password`, acting as the owner; it may not log in yet (`enable_login_sql`): a rotation
    that stops before it is recorded leaves no way in that nothing knows of."""
    verifier = _literal(scram_verifier(password))
    return f"CREATE ROLE {_ident(login)} NOLOGIN PASSWORD {verifier};\n{_acting_as_owner(login)}"


def enable_login_sql(login: str) -> str:
    return f"ALTER ROLE {_ident(login)} LOGIN;\n"


def converge_sql(login: str, password: str, retiring: str | None) -> str:
    """After a restore (the roles are the backup's): `login` logs in with `password`, made if the backup predates
    it; no other login but `retiring` (whose password is its own forever) and the superuser over the socket."""
    verifier, kept = _literal(scram_verifier(password)), [services.SUPERUSER, login, retiring or login]
    return (
        f"SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = {_literal(login)}) AS present \\gset\n"
        f"\\if :present\nALTER ROLE {_ident(login)} LOGIN PASSWORD {verifier};\n"
        f"\\else\nCREATE ROLE {_ident(login)} LOGIN PASSWORD {verifier};\n\\endif\n"
        f"{_acting_as_owner(login)}"
        "SELECT format('ALTER ROLE %I NOLOGIN PASSWORD NULL', rolname) FROM pg_roles "
        f"WHERE rolcanlogin AND rolname NOT IN ({', '.join(map(_literal, kept))}) \\gexec\n"
    )


def _acting_as_owner(login: str) -> str:
    """`login` a member of the owner, acting as it from its first statement (what it makes is the owner's); the
    superuser's first password (initdb's) dropped: over the socket, peer needs none."""
    role, owner = _ident(login), services.USERNAME
    superuser = f"ALTER ROLE {_ident(services.SUPERUSER)} PASSWORD NULL;\n"
    if login == owner:
        return superuser
    return f"GRANT {_ident(owner)} TO {role};\nALTER ROLE {role} SET role = {_literal(owner)};\n{superuser}"


def retire_login_sql(login: str) -> str:
    """Bar `login` from logging in, end its sessions, and drop it with what it owns given to the owner; the
    owner is kept (it owns the data). A login that is gone already is no error: a retirement may be retried."""
    role, name = _ident(login), _literal(login)
    drop = (
        ""
        if login == services.USERNAME
        else f"REASSIGN OWNED BY {role} TO {_ident(services.USERNAME)};\nDROP OWNED BY {role};\nDROP ROLE {role};\n"
    )
    return (
        f"SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) AS present \\gset\n"
        "\\if :present\n"
        f"ALTER ROLE {role} NOLOGIN PASSWORD NULL;\n"
        f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = {name};\n"
        f"{drop}"
        "\\endif\n"
    )


async def run_sql(runtime: NodeRuntime, container_id: str, sql: str, *, database: str = services.DATABASE) -> None:
    """Run `sql` (psql's input: one transaction per statement, the first error ends it) on `database` in the
    service's container; `EngineError` with psql's words if it fails."""
    session = await runtime.exec(container_id, [*PSQL, database], tty=False)
    try:
        await session.write(sql.encode())
        await session.close_input()
        output = bytearray()
        while (piece := await session.read()) is not None:
            output += piece[1][-OUTPUT_LIMIT:]
            del output[:-OUTPUT_LIMIT]
        code = await exit_code(session)
    finally:
        await session.kill()
    if code != 0:
        raise EngineError(f"psql ended with {code}: {output.decode(errors='replace').strip()}")


async def exit_code(session: ExecSession) -> int | None:
    """The exit code of a command whose output has ended: the engine records it a moment after (seconds, on a
    busy host); None if it has not within `EXIT_SECONDS`."""
    deadline = asyncio.get_running_loop().time() + EXIT_SECONDS
    while (code := await session.exit_code()) is None and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    return code


async def rotate(
    engine: Engine, pool: NodePool, box: SecretBox, nudge: Callable[[], None], actor: str, tenant: str, name: str
) -> RotationRead:
    """Rotate the service's credentials: a new login given to its bound apps, the old one retired once they all
    run with it. A rotation left unfinished (its apps had not rolled within `ROLL_SECONDS`, or the daemon stopped)
    is finished by the next call, which makes no new login."""
    service, instance = await _db(engine, lambda s: services.running_service(s, tenant, name))
    runtime = _runtime(pool, instance)
    resumed = service.retiring is not None
    if service.retiring is None:
        login, password = services.new_login(), secrets.token_urlsafe(24)
        await _changed(run_sql(runtime, instance.container_id, add_login_sql(login, password)), name)
        was = service.username
        if not await _db(engine, lambda s: services.begin_rotation(s, box, actor, tenant, name, was, login, password)):
            await _changed(run_sql(runtime, instance.container_id, retire_login_sql(login)), name)
            raise Conflict(f"another rotation of service {name!r} is under way: try again when it is over")
        await _changed(run_sql(runtime, instance.container_id, enable_login_sql(login)), name)
        nudge()  # the bound apps roll now, not at the next pass
        retiring = was
    else:
        retiring = service.retiring
    deadline = asyncio.get_running_loop().time() + ROLL_SECONDS
    while waiting := await _db(engine, lambda s: services.still_rolling(s, box, tenant, name)):
        if asyncio.get_running_loop().time() > deadline:
            log.warning("rotation of %s/%s: %s still rolling; %s stays valid", tenant, name, waiting, retiring)
            return await _read(engine, tenant, name, retiring, waiting, resumed)
        await asyncio.sleep(ROLL_POLL_SECONDS)
    await _changed(run_sql(runtime, instance.container_id, retire_login_sql(retiring)), name)
    await _db(engine, lambda s: services.finish_rotation(s, actor, tenant, name, retiring))
    return await _read(engine, tenant, name, None, [], resumed)


async def reapply(engine: Engine, pool: NodePool, box: SecretBox, tenant: str, name: str) -> None:
    """Once the service runs again after a restore, make its logins what its row says (the restored roles are
    the backup's: a login rotated in since would be missing, and one retired since valid again)."""
    deadline = asyncio.get_running_loop().time() + REAPPLY_SECONDS
    while True:
        try:
            service, instance = await _db(engine, lambda s: services.running_service(s, tenant, name))
            break
        except Conflict:
            if asyncio.get_running_loop().time() > deadline:
                raise Unavailable(
                    f"service {name!r} did not start within {REAPPLY_SECONDS:.0f} s of the restore: its logins are "
                    "the backup's until it does and this is asked again (restore again, or rotate its credentials)"
                ) from None
            await asyncio.sleep(ROLL_POLL_SECONDS)
    for _ in range(REAPPLY_ROUNDS):  # again if a rotation began meanwhile: its new login is not barred
        sql = converge_sql(service.username, box.decrypt(service.password_encrypted), service.retiring)
        await _changed(run_sql(_runtime(pool, instance), instance.container_id, sql), name)
        applied = service.username, service.retiring
        service, instance = await _db(engine, lambda s: services.running_service(s, tenant, name))
        if (service.username, service.retiring) == applied:
            return
    raise Unavailable(f"the logins of service {name!r} kept changing while they were set after the restore: "
                      "rotate its credentials once the rotation under way is over")  # fmt: skip


async def _changed(change: Awaitable[None], name: str) -> None:
    """`change` done, or `Unavailable` saying why not (psql's words are the operator's: they go to the log)."""
    try:
        await change
    except EngineError as exc:
        log.error("changing the roles of service %s: %s", name, exc)
        raise Unavailable(f"the roles of service {name!r} could not be changed; the daemon's log says why") from None


def _runtime(pool: NodePool, instance: Instance) -> NodeRuntime:
    if instance.node not in pool.names():
        raise Unavailable(f"the node {instance.node!r} of the service is not reachable now")
    return pool[instance.node].runtime


async def _read(
    engine: Engine, tenant: str, name: str, retiring: str | None, waiting: list[str], resumed: bool
) -> RotationRead:
    def read(session: Session) -> RotationRead:
        service = services.get_service(session, get_tenant(session, tenant), name)
        return RotationRead(login=service.username, retiring=retiring, waiting_for=waiting, resumed=resumed)

    return await _db(engine, read)


async def _db(engine: Engine, work: Callable[[Session], T]) -> T:
    def run() -> T:
        with db.session(engine) as session:
            return work(session)

    return await asyncio.to_thread(run)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
