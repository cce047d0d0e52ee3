"""`strata up`: one process that owns `STRATA_HOME` and runs the platform's parts on one event loop —
the control API, the reconciler, the SSH server and the front door's controller — and stops them together.

The front door itself is HAProxy, which the daemon starts (or adopts, serving since an earlier daemon) and
feeds routes; a SIGTERM (a service manager's restart) leaves it serving for the next daemon, a SIGINT (Ctrl-C
in a terminal: the person is ending the platform) stops it too.
"""

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import uvicorn
import uvloop
from fastapi import FastAPI
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlmodel import Session

from gateway import FrontDoor, Listeners
from gateway.acme import AcmeIssuer, ChallengeBoard
from gateway.certificates import Certificates
from gateway.certs import CertStore, LocalCA
from gateway.haproxy import HAProxyError
from gateway.runtime import HAProxyError as RuntimeApiError
from hosting.iaas import detect_accel
from hosting.iaas.driver import HypervisorDriver
from hosting.iaas.guest_image import find_node_image
from hosting.iaas.guest_ssh import client_key
from hosting.iaas.provision import Provisioner
from hosting.iaas.qemu import QemuDriver
from hosting.paas.backup_s3 import S3Store
from hosting.paas.backup_store import ArchiveStore, LocalStore, StoreError
from hosting.paas.backups import VolumeBackups
from hosting.paas.builds import Builder
from hosting.paas.docker_runtime import DockerRuntime
from hosting.paas.host_login import host_client_key
from hosting.paas.libvirt_hosts import LibvirtHosts
from hosting.paas.node_volumes import NodeVolumes
from hosting.paas.nodes import NodeHandle, NodePool, NodeSource
from hosting.paas.pause import pause
from hosting.paas.reach import Reach
from hosting.paas.reconciler import Reconciler
from hosting.paas.remote_hosts import RemoteHosts
from hosting.paas.standby import REFRESH_SECONDS, Standby, every_door, other_doors
from hosting.paas.tunnels import Tunnels
from hosting.paas.vm_nodes import VmNodes, engine_ready
from strata.api import Platform, create_app
from strata.config import Settings
from strata.leadership import Leadership, NameTaken, claimed
from strata.shared_certificates import SharedCertificates, share_local_ca
from strata.shared_challenges import SharedChallenges
from strata.ssh_access import SshAccess
from tenants import backups as backup_records
from tenants import daemons, db, installation, tokens
from tenants import volumes as volume_records
from tenants.enums import Role
from tenants.errors import Invalid
from tenants.routes import RouteSpec
from tenants.schemas import TokenCreate
from tenants.secrets import SecretBox, SecretKeyError
from tui.ssh.server import serve_ssh

log = logging.getLogger("strata")

OPERATOR_TOKEN_NAME = "bootstrap"
SHUTDOWN_GRACE_SECONDS = 5
ORPHANS_SECONDS = 10.0  # how often the leader looks for builds whose daemon is gone


Address = tuple[str, int]


class DaemonError(Exception):
    """The daemon cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class Options:
    api: Address | None = None  # the control API over TCP too (it is always on the unix socket)
    gateway: Address = ("127.0.0.1", 8080)
    https: Address | None = ("127.0.0.1", 8443)
    gateway_admin: Address | None = ("127.0.0.1", 9180)  # GET /metrics (HAProxy's Prometheus exporter)
    gateway_workers: int = 1  # HAProxy's threads
    ssh: Address | None = ("127.0.0.1", 2222)  # the console and tenant commands over SSH
    local_node: bool = True  # place containers on this host's Docker engine


def run(settings: Settings, options: Options) -> None:
    """Run the daemon in the foreground until SIGINT or SIGTERM."""
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _exclusive(settings.lock_file), contextlib.ExitStack() as held:
        engine = _open_database(settings.database_url)
        ensure_operator_token(engine, settings.operator_token_file)
        box = SecretBox(settings.secret_key_file)
        platform_id = _join(engine, settings.platform_id_file, box)
        held.enter_context(_named(engine, settings.daemon_name))
        local = DockerRuntime("local", settings.docker_url)
        nodes = [NodeHandle(local, "local", settings.docker_url)] if options.local_node else []
        (settings.home / "logs").mkdir(exist_ok=True)
        gateway = FrontDoor(
            settings.home / "haproxy",
            settings.domain,
            Listeners(options.gateway, options.https, options.gateway_admin),
            access_log=settings.home / "logs" / "access.log",
            threads=options.gateway_workers,
            wake=lambda tenant, app: _wake(tenant, app),  # the activator's: defined below
        )
        shared = None  # on PostgreSQL another daemon's door may be where the CA validates this one's order
        if engine.dialect.name == "postgresql":
            shared = SharedChallenges(engine, settings.daemon_name, gateway)
        certificates = _certificates(settings, engine, box, gateway, shared or gateway) if options.https else None

        def publish(routes: list[RouteSpec]) -> None:
            gateway.apply(routes)
            if certificates is not None:
                certificates.want(gateway.hostnames(routes))

        pool = NodePool(nodes)
        volumes = NodeVolumes(settings.home / "volumes", engine, pool, platform_id) if options.local_node else None
        reconciler = Reconciler(
            engine,
            platform_id,
            pool,
            settings.scheduler,
            publish=publish,
            drain=gateway.drain,
            image_store=local if options.local_node else None,
            secrets=box,
            volumes=volumes.mounted if volumes is not None else None,
            activity=every_door(engine, settings.daemon_name, gateway.activity),
            in_flight=gateway.activator.in_flight,
        )
        reconciler.usage.traffic = gateway.take_usage  # requests and bytes through the front door, metered
        hypervisors = _hypervisors(engine, settings, reconciler)
        client = host_client_key(settings.home / "host_client_key")
        remote_hosts = RemoteHosts(engine, client, reconciler.platform_id, settings.home / "sockets", reconciler.pool)
        libvirt_hosts = LibvirtHosts(
            engine, client, detect_accel(), settings.home / "libvirt", settings.home / "sockets", reconciler.pool,
            lambda driver: _provisioner(settings, driver, driver),  # it cannot snapshot: no templates
        )  # fmt: skip
        node_sources: list[NodeSource] = [*hypervisors, remote_hosts, libvirt_hosts]  # the leader drives them
        if volumes is not None:
            volumes.nudge = reconciler.nudge
            volumes.use(hypervisors)
        builder = Builder(
            engine,
            local if options.local_node else None,
            settings.home / "builds",
            platform_domain=settings.domain,
            daemon=settings.daemon_name,
            platform=reconciler.platform_id,
        )
        reconciler.building = builder.tenants_building  # a build's RUN steps use its tenant's network

        def build_elsewhere(session: Session) -> str | None:  # a standby on another host than the leader's
            if leadership.leading.is_set():
                return None
            found = daemons.leader_elsewhere(session, socket.gethostname(), db.clock(session))
            return None if found is None else daemons.image_store_elsewhere("builds run", found)

        builder.elsewhere = build_elsewhere
        for build_id in builder.recover():
            log.warning("build %d was cut off by this daemon's stop: marked failed", build_id)
        backups = None
        if volumes is not None:
            backups = VolumeBackups(
                engine, reconciler.pool, volumes, settings.home / "backups", store=_archive_store(settings)
            )
            reconciler.paused = backups.paused  # frozen for a copy: their health is not judged meanwhile
            backups.sweep()
        tunnels = Tunnels(client, lambda: standby.nudge(), settings.home / "sockets")  # a standby's own logins
        standby = Standby(
            engine, settings.daemon_name, pool, publish, traffic=gateway.take_usage, activity=gateway.activity,
            request_wake=lambda tenant, app: leadership.request_wake(tenant, app), tunnels=tunnels,
            drain=gateway.drain,
        )  # fmt: skip

        async def _wake(tenant: str, app: str) -> str | None:  # the front door holds a request for a sleeping app
            if leadership.leading.is_set():
                return await reconciler.wake(tenant, app)
            return await standby.wake(tenant, app)

        def wake_asked(tenant: str, app: str) -> None:  # a standby's front door holds a request for the app
            async def wake() -> None:
                await reconciler.wake(tenant, app)
                reconciler.nudge()  # a pass at once writes the woken instances' rows: the standby waits for them

            task = asyncio.ensure_future(wake())
            waking.add(task)  # held: the loop keeps only weak references to tasks
            task.add_done_callback(waking.discard)

        waking: set[asyncio.Task[None]] = set()

        def changed() -> None:  # another daemon changed the desired state
            reconciler.nudge()
            standby.nudge()
            for source in node_sources:
                source.nudge()

        leadership = Leadership(engine, settings.daemon_name, changed, wake_asked)
        reconciler.saved = leadership.announce  # the standbys' front doors read the rows again at once
        if engine.dialect.name == "postgresql":  # standbys' doors may serve an instance: they let go of it first
            # their drains begin a read of the records later than the leader's, and may take as long
            timeout = gateway.limits.drain_timeout + 2 * REFRESH_SECONDS
            reconciler.let_go = other_doors(engine, settings.daemon_name, leadership.announce, timeout)

        def nudge() -> None:  # this daemon's API changed the desired state
            reconciler.nudge()
            standby.nudge()
            leadership.announce()

        platform = Platform(
            engine=engine,
            settings=settings,
            pool=reconciler.pool,
            usage=reconciler.usage,
            gateway=gateway,
            certificates=certificates,
            hypervisors={vm_nodes.driver.name: vm_nodes for vm_nodes in hypervisors},
            remote_hosts=remote_hosts,
            libvirt_hosts=libvirt_hosts,
            reach=Reach(reconciler.pool, tunnels, leadership.leading.is_set),
            nudge=nudge,
            builder=builder,
            pulls=reconciler.pulls,
            volumes=volumes,
            backups=backups,
            sleeps=reconciler.sleeps,
            cold_starts=reconciler.sleeper.cold_starts,
            leads=leadership.leading.is_set,
        )
        app = create_app(platform)
        sockets = [_unix_socket(settings.api_socket)]
        if options.api:
            sockets.append(_tcp_socket(options.api))
        parts = _Parts(
            app, reconciler, node_sources, gateway, certificates, backups, volumes, leadership, standby,
            partial(_recover, engine, backups), builder, shared,
        )  # fmt: skip
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(_serve(parts, sockets, options, settings))
        finally:
            settings.api_socket.unlink(missing_ok=True)
            engine.dispose()


def _archive_store(settings: Settings) -> ArchiveStore:
    """Where verified backups are kept: the S3-compatible store `STRATA_BACKUP_S3_URL` names, or under
    `STRATA_HOME/backups`."""
    if settings.backup_s3 is None:
        return LocalStore(settings.home / "backups")
    log.info("backups are kept in %s", settings.backup_s3)
    return S3Store(settings.backup_s3)


def _certificates(
    settings: Settings, engine: Engine, box: SecretBox, gateway: FrontDoor, board: ChallengeBoard
) -> Certificates:
    """Certificates from the platform's local CA (kept in the database, its files under `ca/`), or over ACME when
    `STRATA_ACME_DIRECTORY` names a server (its account key under `acme/`), shared through the database and served
    from `certs/`; ACME's challenges are put on `board`."""
    acme = None
    if settings.acme_directory:
        (settings.home / "acme").mkdir(mode=0o700, exist_ok=True)
        acme = AcmeIssuer(
            settings.acme_directory,
            settings.home / "acme" / "account.key",
            board,
            email=settings.acme_email,
            ca_bundle=settings.acme_ca_bundle,
        )
    local_ca = LocalCA(settings.home / "ca")
    share_local_ca(engine, box, local_ca)
    ledger = SharedCertificates(engine, box, settings.daemon_name)
    store = CertStore(settings.home / "certs")
    return Certificates(ledger, store, local_ca, gateway.serve_certificate, gateway.unserve_certificate, acme)


async def _until(stopping: asyncio.Event, work: Coroutine[object, object, None]) -> None:
    """Run `work` (which runs forever) until `stopping`."""
    task = asyncio.ensure_future(work)
    await asyncio.wait([task, asyncio.ensure_future(stopping.wait())], return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _hypervisors(engine: Engine, settings: Settings, reconciler: Reconciler) -> list[VmNodes]:
    """VM nodes on QEMU, and through libvirt when `STRATA_LIBVIRT_URI` says where. QEMU's VMs are under
    `vms/`, their flavors' templates under `templates/` with the snapshots under `snapshots/`; libvirt's under
    `libvirt/vms/` (it boots every VM cold). All boot the node image `strata images node-build` made."""
    accel = detect_accel()
    drivers: list[tuple[HypervisorDriver, HypervisorDriver]] = [
        (QemuDriver(settings.home / "vms", accel), QemuDriver(settings.home / "templates", accel))
    ]
    if settings.libvirt_uri:
        from hosting.iaas.libvirt import LibvirtDriver  # libvirt-python only where libvirt is used

        libvirt = LibvirtDriver(settings.home / "libvirt" / "vms", accel, settings.libvirt_uri)
        drivers.append((libvirt, libvirt))  # its own templates' driver, unused: it cannot snapshot
    return [
        VmNodes(
            engine,
            driver,
            partial(_provisioner, settings, driver, templates),
            settings.home / "sockets",
            reconciler.pool.attach,
            reconciler.pool.detach,
        )
        for driver, templates in drivers
    ]


def _provisioner(settings: Settings, driver: HypervisorDriver, templates: HypervisorDriver) -> Provisioner | None:
    image = find_node_image(settings.images_dir)
    if image is None:
        return None
    return Provisioner(
        driver,
        templates,
        image.guest,
        client_key(settings.home / "vm_client_key"),
        engine_ready,
        settings.home / "snapshots",
    )


@dataclass
class _Parts:
    """What the daemon runs on its loop. Every daemon serves the API, SSH and its front door (`standby` feeds it
    until the daemon leads); the one that leads also `recover`s what a stop cut off, and runs the reconciler, the
    VM nodes and the backup schedule."""

    app: FastAPI
    reconciler: Reconciler
    node_sources: list[NodeSource]  # VM nodes and remote hosts: the leader drives them
    gateway: FrontDoor
    certificates: Certificates | None
    backups: VolumeBackups | None
    volumes: NodeVolumes | None
    leadership: Leadership
    standby: Standby
    recover: Callable[[], None]
    builder: Builder
    challenges: SharedChallenges | None  # the other daemons' ACME challenges, on this daemon's front door too


async def _serve(parts: _Parts, sockets: list[socket.socket], options: Options, settings: Settings) -> None:
    """Serve, route (and reconcile, once leading) until SIGINT or SIGTERM, then let in-flight requests finish
    (within a grace period). Containers keep running across a stop: the next start adopts them. A leader that
    loses its lock stops as for a SIGTERM, and says so (`DaemonError`): it must not act once another may lead.
    """
    gateway, reconciler = parts.gateway, parts.reconciler
    if parts.volumes is not None:
        await parts.volumes.start()
    try:
        await gateway.start()
    except (HAProxyError, RuntimeApiError, OSError) as exc:
        raise DaemonError(f"the front door cannot start: {exc}") from None
    log.info("front door on http://%s:%d (apps at http://APP.TENANT.%s)", *options.gateway, settings.domain)
    ssh = None
    if options.ssh:
        try:
            ssh = await serve_ssh(
                *options.ssh, settings.home / "ssh_host_key", SshAccess(reconciler.engine), settings.home
            )
        except OSError as exc:
            await gateway.close(stop_haproxy=not gateway.adopted)  # what a daemon that fails started, it stops
            raise DaemonError(f"the SSH server cannot listen: {exc.strerror or exc}; choose another --ssh") from None
        log.info("SSH on %s:%d (ssh -p %d admin@%s)", *options.ssh, options.ssh[1], options.ssh[0])
    config = uvicorn.Config(
        parts.app,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    api = _ApiServer(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    interrupted: list[int] = []

    def stop(signum: int) -> None:
        interrupted.append(signum)
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    serving = asyncio.create_task(api.serve(sockets=sockets))
    released = asyncio.Event()  # the leader work has stopped: the lock may go
    electing = asyncio.create_task(parts.leadership.run(stopping, released))
    leading = asyncio.create_task(_lead(parts, stopping))
    tasks = [serving, leading]
    if parts.certificates is not None:
        tasks.append(asyncio.create_task(_until(stopping, parts.certificates.run())))
    if parts.challenges is not None:
        tasks.append(asyncio.create_task(parts.challenges.run(stopping)))
    log.info(
        "control API on %s; nodes: %s",
        ", ".join(map(_describe, sockets)),
        ", ".join(reconciler.pool.names()) or "none yet",
    )
    until = asyncio.create_task(stopping.wait())
    await asyncio.wait([serving, electing, leading, until], return_when=asyncio.FIRST_COMPLETED)
    failed = next((t for t in (electing, leading) if t.done() and not stopping.is_set()), None)
    stopping.set()
    if ssh is not None:
        await ssh.close()  # first: its sessions' commands are clients of the API, and end with their sessions
    api.should_exit = True
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for source in parts.node_sources:
        await source.close()  # after the reconciler: it must never see a node's engine go mid-pass
    await reconciler.close()
    if parts.leadership.leading.is_set():
        log.info("this daemon's leader work has stopped: it gives up the lead")
    released.set()
    election = (await asyncio.gather(electing, return_exceptions=True))[0]
    await gateway.close(stop_haproxy=signal.SIGINT in interrupted)
    for node in reconciler.pool:
        await node.runtime.close()
    log.info("stopped")
    if failed is not None:
        why = election if failed is electing else outcomes[1]
        raise DaemonError(f"the daemon's {'leader election' if failed is electing else 'leader work'} failed: {why}")
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            raise outcome


async def _lead(parts: _Parts, stopping: asyncio.Event) -> None:
    """Term after term until `stopping`: stand by, feeding the front door from the records; once this daemon
    leads, its own reconciler feeds it (the standby's feed ends first), what a stop cut off is recovered, and the
    leader's work runs until `stopping` — or is cut short at once if the term ends (`demoted`), and the daemon
    stands by again."""
    leadership = parts.leadership
    while not stopping.is_set():
        feeding = asyncio.create_task(parts.standby.run(stopping))
        await _first(feeding, leadership.leading.wait())
        if not leadership.leading.is_set():
            await feeding  # ended: the daemon stops
            return
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding
        work = asyncio.create_task(_leader_work(parts, stopping))
        await _first(work, leadership.demoted.wait())
        if not leadership.demoted.is_set():
            await work  # ended: the daemon stops (or it failed: the daemon says so)
            return
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        parts.reconciler.forget()  # what it knew may be stale by the next term: it adopts again


async def _leader_work(parts: _Parts, stopping: asyncio.Event) -> None:
    await _until_done(stopping, parts.recover)
    work = [parts.reconciler.run(stopping), *(source.run(stopping) for source in parts.node_sources)]
    work.append(_fail_orphaned_builds(parts.reconciler.engine, parts.builder, stopping))
    if parts.backups is not None:
        work.append(parts.backups.run(stopping))
    await asyncio.gather(*work)


async def _fail_orphaned_builds(engine: Engine, builder: Builder, stopping: asyncio.Event) -> None:
    """Every `ORPHANS_SECONDS`: the builds of daemons gone (no heartbeat) are failed; they will not finish."""
    while not stopping.is_set():
        try:
            alive = await asyncio.to_thread(_alive, engine)
            for build_id in await asyncio.to_thread(builder.fail_orphaned, alive):
                log.warning("build %d was cut off by the end of its daemon: marked failed", build_id)
        except SQLAlchemyError as exc:
            log.warning("builds of daemons gone not looked for: %s", exc)
        await pause(asyncio.Event(), stopping, ORPHANS_SECONDS)


def _alive(engine: Engine) -> list[str]:
    with db.session(engine) as session:
        return [daemon.name for daemon in daemons.daemons(session, db.clock(session)) if daemon.alive]


async def _until_done(stopping: asyncio.Event, step: Callable[[], None]) -> None:
    """Run `step` in a thread until it succeeds, again every second while the database is out of reach."""
    while not stopping.is_set():
        try:
            await asyncio.to_thread(step)
            return
        except SQLAlchemyError as exc:
            log.warning("recovering what a stop cut off: %s; trying again", exc)
            await asyncio.sleep(1.0)


async def _first(*waits: Awaitable[object]) -> None:
    """Until the first of `waits` ends; the others are cancelled (a task among them is left running)."""
    futures = [asyncio.ensure_future(w) for w in waits]
    await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    for future, wait in zip(futures, waits, strict=True):
        if future is not wait:
            future.cancel()


def _recover(engine: Engine, backups: VolumeBackups | None) -> None:
    """Mark what the last leader's stop cut off (only a leader moves volumes and makes backups): its volume moves
    and restores undone, its backups failed (their archives removed)."""
    with db.session(engine) as session:
        for volume in volume_records.recover_moves(session):
            log.warning("the move of volume %s was cut off by the daemon's stop: it stays where it was", volume)
    if backups is None:
        return
    with db.session(engine) as session:
        cut, restores = backup_records.recover(session)
    for backup_id, tenant in cut:
        log.warning("backup %d was cut off by the daemon's stop: marked failed", backup_id)
        try:
            backups.remove(tenant, backup_id)
        except StoreError as exc:  # the store is out of reach: the daemon starts all the same
            log.warning("backup %d: its archive may be left in the store: %s", backup_id, exc)
    for volume in restores:
        log.warning("the restore of volume %s was cut off by the daemon's stop: its apps run again", volume)


class _ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns the signals and stops every part."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def ensure_operator_token(engine: Engine, path: Path) -> None:
    """Keep a working operator token at `path` (0600): minted on first start, or if the file's is void."""
    with db.session(engine) as session:
        if path.exists() and tokens.authenticate(session, path.read_text().strip()):
            return
        _, secret = tokens.mint(session, "daemon", TokenCreate(role=Role.OPERATOR, name=OPERATOR_TOKEN_NAME))
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    os.replace(temporary, path)
    log.info("new operator token written to %s", path)


def _join(engine: Engine, path: Path, box: SecretBox) -> str:
    """The platform's id, which its containers carry so two installations sharing an engine never take each
    other's for orphans: the database's, shared by every daemon on it; the first daemon's makes it (the one in
    its home from an earlier start, or a new one). It is written to `path` too, for the tools that read it there.
    A daemon whose secret key is not the platform's is refused."""
    try:
        mine = path.read_text().strip()
    except FileNotFoundError:
        mine = secrets.token_hex(8)
    try:
        fingerprint = box.fingerprint()
    except SecretKeyError as exc:
        raise DaemonError(str(exc)) from None
    with db.session(engine) as session:
        try:
            platform, replaced = installation.join(session, mine, fingerprint, sole=engine.dialect.name == "sqlite")
        except Invalid as exc:
            raise DaemonError(str(exc)) from None
    if replaced:
        log.warning("the secret key %s is not the one the stored secrets were sealed with: store them again", box.path)
    if platform != mine:
        path.write_text(platform + "\n")
    elif not path.exists():
        path.write_text(mine + "\n")
    return platform


@contextmanager
def _named(engine: Engine, name: str) -> Iterator[None]:
    """The daemon's name held for the block (`leadership.claimed`), or the daemon refused, naming the other."""
    try:
        with claimed(engine, name):
            yield
    except NameTaken:
        with db.session(engine) as session:
            other = daemons.last_seen(session, name)
        pid = f" (pid {other[0]})" if other is not None else ""
        raise DaemonError(
            f"a daemon named {name} runs on this database{pid}: give this one another name (STRATA_DAEMON_NAME)"
        ) from None


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold a lock on `lock_file` for the daemon's life: two daemons on one home would corrupt it."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode().strip() or "unknown"
        os.close(fd)
        raise DaemonError(
            f"another strata daemon (pid {owner}) is running on {lock_file.parent}; "
            "stop it first, or set STRATA_HOME to use another home"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _unix_socket(path: Path) -> socket.socket:
    """Bind the API socket readable by its owner only (0600 from the first instant, via the umask)."""
    path.unlink(missing_ok=True)  # a stale socket of a daemon that died; we hold the lock now
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    return sock


def _open_database(url: str) -> Engine:
    """The control-plane database, migrated; one that cannot be reached or named is said so, its password hidden."""
    try:
        return db.open_engine(url)
    except (ArgumentError, ModuleNotFoundError) as exc:  # no URL, or a driver not installed
        raise DaemonError(
            f"STRATA_DATABASE_URL is not a database Strata can use ({exc}): it takes sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DB"
        ) from None
    except OperationalError as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        raise DaemonError(f"the database {shown} cannot be opened: {str(exc.orig).strip()}") from None


def _tcp_socket(address: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise DaemonError(f"cannot listen on {address[0]}:{address[1]}: {exc.strerror}") from None
    return sock


def _describe(sock: socket.socket) -> str:
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"
