"""The front door's controller: it keeps HAProxy serving what the control plane publishes.

`apply` takes the whole set of routes (cheap, synchronous, from the reconciler); a task converges HAProxy to
the latest set through its runtime API — servers added and set ready, set to maintenance when they leave (their
requests in flight finish; `drain` waits for that, then deletes them), map entries for hostnames and each
tenant's limits — without a reload. A new app's backend is a structural change: the configuration is rendered
again and HAProxy reloads seamlessly. After every change the configuration and maps on disk are rewritten and
`state.json` records what HAProxy holds, so that a restarted HAProxy starts from it and the next daemon adopts it.
"""

import asyncio
import contextlib
import itertools
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gateway import runtime, tls
from gateway.accesslog import AccessLog, Request, dropped_logs, traffic, unparsed, wire_bytes
from gateway.activator import Activator, Wake
from gateway.config import (
    MAPS,
    Files,
    Listeners,
    backend_name,
    map_lines,
    pages,
    render,
    server_options,
)
from gateway.haproxy import HAProxy, HAProxyError
from gateway.limits import Limits
from gateway.metrics import RouteMetrics, Traffic
from tenants.routes import Activity, RouteSpec

log = logging.getLogger(__name__)

LOG_READ_SECONDS = 1.0
LOG_POLL_SECONDS = 0.05
DROPPED_CHECK_SECONDS = 10.0  # how often HAProxy is asked how many log lines it dropped
WATCH_SECONDS = 1.0
DRAIN_POLL_SECONDS = 0.05


@dataclass
class _State:
    """What HAProxy holds: servers per backend, servers in maintenance awaiting deletion, and map entries."""

    backends: dict[str, set[str]] = field(default_factory=dict)
    draining: dict[str, str] = field(default_factory=dict)  # HOST:PORT → its backend
    maps: dict[str, dict[str, str]] = field(default_factory=lambda: {name: {} for name in MAPS})
    certificates: set[str] = field(default_factory=set)  # combined PEM files in the HTTPS listener's crt-list

    def to_json(self) -> str:
        backends = {name: sorted(servers) for name, servers in self.backends.items()}
        data = {"backends": backends, "draining": self.draining, "maps": self.maps}
        return json.dumps(data | {"certificates": sorted(self.certificates)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "_State":
        data = json.loads(text)
        maps = {name: dict(data["maps"].get(name, {})) for name in MAPS}
        backends = {k: set(v) for k, v in data["backends"].items()}
        return cls(backends, dict(data["draining"]), maps, set(data.get("certificates", [])))


class FrontDoor:
    """HAProxy as the platform's front door. `start` before use; `close` leaves it serving unless told."""

    def __init__(
        self,
        root: Path,
        domain: str,
        listeners: Listeners,
        *,
        access_log: Path,
        threads: int = 1,
        limits: Limits | None = None,
        wake: Wake | None = None,
    ) -> None:
        self.domain = domain
        self.files = Files(root)
        self.listeners = listeners
        self.threads = threads
        self.limits = limits or Limits()
        self.haproxy = HAProxy(self.files, root / "haproxy.log")
        self.access_log = AccessLog(root / "access.fifo", access_log)
        self._lines: list[bytes] = []  # whole lines read from HAProxy, not yet written
        self._metrics: dict[tuple[str, str], RouteMetrics] = {}
        self._usage: dict[tuple[str, str], tuple[int, int, int]] = {}  # since `take_usage`: requests, bytes in, out
        self.log_lines_unparsed = 0  # since this daemon started: lines no request's (their usage is not metered)
        self.log_lines_dropped = 0  # lines HAProxy could not write to the FIFO (nor is theirs), summed over its runs
        self._dropped_seen: int | None = None  # HAProxy's own count when last asked
        self._desired: list[RouteSpec] = []
        self._state = _State()
        self._generation = 0  # reloads so far: servers that went into maintenance before one are the old worker's
        self._since: dict[str, int] = {}  # HOST:PORT → the generation of the first worker that served it
        self._changed = asyncio.Event()
        self._converged = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.adopted = False  # `start` found HAProxy serving, left by an earlier daemon
        self._doubtful = False  # a change failed half-way: reload from the files before anything else
        self._checked: str | None = None  # the configuration last in force, rendered without its servers
        self.activator = Activator(self._app_of, wake)  # requests for apps with no ready instance: sleeping ones

    # the control plane's side

    def apply(self, routes: Iterable[RouteSpec]) -> None:
        """Serve exactly these routes from now on (converged in the background, in order)."""
        self._desired = list(routes)
        self._converged.clear()
        self._changed.set()

    async def settled(self) -> None:
        """Wait until HAProxy serves the routes last applied."""
        await self._converged.wait()

    async def drain(self, address: str) -> bool:
        """Wait until no request is in flight to `address`, which left the routes, then forget it; False if
        the drain timeout passed first."""
        deadline = time.monotonic() + self.limits.drain_timeout
        try:
            async with asyncio.timeout(self.limits.drain_timeout):
                await self.settled()
        except TimeoutError:
            return False  # HAProxy is not taking changes: the instance may still be routed
        while (backend := self._state.draining.get(address)) is not None:
            async with self._lock:
                if await self._idle(backend, address) and await self._delete(backend, address):
                    break
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        # served by a worker of an earlier configuration too: that worker may still have requests for it
        if self._since.pop(address, 0) < self._generation:
            while await self.haproxy.old_workers():
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(DRAIN_POLL_SECONDS)
        return True

    def hostnames(self, routes: Iterable[RouteSpec]) -> set[str]:
        """Every hostname `routes` serve: `<app>.<tenant>.<domain>` and each app's extra ones."""
        return {host.lower() for r in routes for host in (f"{r.app}.{r.tenant}.{self.domain}", *r.hostnames)}

    async def activity(self) -> dict[tuple[str, str], Activity] | None:
        """Each app's traffic as HAProxy's worker counts it now: seconds since its last request (None: none
        since the worker started) and its requests in flight (the activator's among them). None when HAProxy
        does not answer: then nobody knows, and no app may be taken for idle."""
        found = {}
        try:
            rows = await runtime.stats(self.files.runtime_socket, kinds=runtime.BACKENDS)
        except runtime.HAProxyError:
            return None
        for row in rows:
            tenant, dot, app = row.get("pxname", "").partition(".")
            if dot and row.get("svname") == "BACKEND":
                idle = row.get("lastsess", "")
                in_flight = int(row.get("scur") or 0) + int(row.get("qcur") or 0)
                found[(tenant, app)] = Activity(float(idle) if idle.isdigit() else None, in_flight)
        return found

    def _app_of(self, host: str) -> tuple[str, str] | None:
        """The (tenant, app) `host` is routed to, as HAProxy's map has it."""
        tenant, dot, app = self._state.maps["hosts"].get(host, "").partition(".")
        return (tenant, app) if dot else None

    def traffic(self, tenant: str, app: str) -> Traffic | None:
        metrics = self._metrics.get((tenant, app))
        return metrics.traffic() if metrics else None

    def take_usage(self) -> dict[tuple[str, str], tuple[int, int, int]]:
        """(tenant, app) -> requests, bytes read from the clients and bytes sent to them, as logged since the last
        call (the meter's); what is taken is the caller's to keep."""
        usage, self._usage = self._usage, {}
        return usage

    # ACME's HTTP-01 challenges (gateway.acme's ChallengeBoard)

    async def publish(self, token: str, key_authorization: str) -> None:
        async with self._lock:
            await self._set_map("challenges", {**self._state.maps["challenges"], token: key_authorization})
            self._write_maps()
            self._save()

    async def withdraw(self, token: str) -> None:
        async with self._lock:
            entries = dict(self._state.maps["challenges"])
            entries.pop(token, None)
            await self._set_map("challenges", entries)
            self._write_maps()
            self._save()

    # certificates (gateway.certificates)

    async def serve_certificate(self, path: Path) -> None:
        """Serve the combined PEM at `path` on HTTPS at once (for the hostnames it names), or its new content."""
        if self.listeners.https is None:
            return
        async with self._lock:
            known = str(path) in self._state.certificates
            self._state.certificates.add(str(path))  # on disk first: a reload or restart serves it whatever follows
            self._write_certificate_list()
            self._save()
            try:
                await tls.load(self.files.runtime_socket, self.files.certs, path, known)
            except runtime.HAProxyError:
                self._doubtful = True  # reloaded whole from the files by the next converge
                self._changed.set()
                raise

    async def unserve_certificate(self, path: Path) -> None:
        """Stop serving the certificate file at `path` (another certificate covers its names now)."""
        async with self._lock:
            if str(path) not in self._state.certificates:
                return
            self._state.certificates.discard(str(path))
            self._write_certificate_list()
            self._save()
            try:
                await tls.unload(self.files.runtime_socket, self.files.certs, path)
            except runtime.HAProxyError:
                self._doubtful = True
                self._changed.set()
                raise

    def _write_certificate_list(self) -> None:
        _write_atomically(self.files.certs, "".join(f"{p}\n" for p in sorted(self._state.certificates)))

    # life

    async def start(self) -> None:
        """Adopt the HAProxy a previous daemon left serving (reloading it with this configuration), or start
        one; then keep converging, reading the access log, and restarting HAProxy should it die."""
        if any(c.isspace() or c in ";#'\"\\" for c in str(self.files.root)):
            raise HAProxyError(f"{self.files.root}: HAProxy's files need a path without spaces, quotes, ; or #")
        self.files.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.files.root / "pages").mkdir(exist_ok=True)
        for status, body in pages().items():
            self.files.page(status).write_bytes(body)
        tls.ensure_placeholder(self.files.default_cert)
        state_file = self.files.root / "state.json"
        if state_file.exists():
            self._state = _State.from_json(state_file.read_text())
        self._state.certificates = {p for p in self._state.certificates if Path(p).exists()}
        self._write_certificate_list()
        self._state.maps["challenges"] = {}  # an order cut off by a stop is ordered again
        await self.activator.start()
        await self._write()
        self.access_log.open()
        self.adopted = self.haproxy.pid() is not None
        if self.adopted:
            log.info("front door: adopting HAProxy (pid %s)", self.haproxy.pid())
            await self.haproxy.reload()
            self._generation += 1
        else:
            await self.haproxy.start(self.access_log.writer())
        self._tasks = [
            asyncio.create_task(self._converge_forever()),
            asyncio.create_task(self._read_log_forever()),
            asyncio.create_task(self._watch_forever()),
        ]

    async def close(self, *, stop_haproxy: bool = False) -> None:
        """Stop converging; HAProxy keeps serving (the next daemon adopts it) unless `stop_haproxy`."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if stop_haproxy:
            await self.haproxy.stop()
        await self.activator.close()  # an adopted HAProxy's next daemon renders its own activator's address
        if self.access_log.reader >= 0:
            self._lines.append(self.access_log.read())
            await self._write_log()
            self.access_log.close()

    # converging

    async def _converge_forever(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            try:
                async with self._lock:
                    await self._converge(self._desired)
            except (runtime.HAProxyError, HAProxyError, OSError) as exc:
                # what HAProxy holds is in doubt (a command may have half-applied): the next try reloads it
                # whole from the files, rendered from the routes wanted
                log.warning("front door: %s; reloading it whole in a moment", exc)
                self._doubtful = True
                await asyncio.sleep(WATCH_SECONDS)
                self._changed.set()
                continue
            if not self._changed.is_set():
                self._converged.set()

    async def _converge(self, routes: list[RouteSpec]) -> None:
        state = self._state
        backends = {backend_name(r.tenant, r.app): set(r.endpoints) for r in routes}
        maps = {
            "hosts": {
                host.lower(): backend_name(r.tenant, r.app)
                for r in routes
                for host in (f"{r.app}.{r.tenant}.{self.domain}", *r.hostnames)
            },
            "rates": {r.tenant: str(max(r.requests_per_second, r.burst)) for r in routes},
            "bodies": {r.tenant: str(r.max_body_bytes) for r in routes},
            "challenges": state.maps["challenges"],
            "redirects": {backend_name(r.tenant, r.app): "1" for r in routes if r.redirect_https},
            "hsts": {backend_name(r.tenant, r.app): "1" for r in routes if r.hsts},
        }
        if backends.keys() - state.backends.keys() or self._doubtful:
            await self._reload(backends, maps)
            self._doubtful = False
            return
        for name, servers in backends.items():
            for address in sorted(servers - state.backends[name]):
                await self._add_server(name, address)
        for name in ("rates", "bodies", "redirects", "hsts", "hosts"):
            await self._set_map(name, maps[name])
        for name, servers in state.backends.items():
            for address in sorted(servers - backends.get(name, set())):
                await runtime.expect(self.files.runtime_socket, f"set server {name}/{address} state maint")
                servers.discard(address)
                state.draining[address] = name
        await self._write()

    async def _reload(self, backends: dict[str, set[str]], maps: dict[str, dict[str, str]]) -> None:
        """A structural change: the whole configuration again, and a seamless reload. Servers in maintenance
        stay out of the new worker; the old one finishes their requests."""
        previous = self._state
        self._state = _State(
            {name: set(servers) for name, servers in backends.items()},
            {a: b for a, b in previous.draining.items() if a not in backends.get(b, set())},
            maps,
            previous.certificates,
        )
        for name, servers in previous.backends.items():
            for address in servers - backends.get(name, set()):
                self._state.draining[address] = name
        await self._write()
        await self.haproxy.reload()
        self._generation += 1
        # the new worker holds the draining servers in maintenance, with nothing in flight: forget them
        for address, name in list(self._state.draining.items()):
            await self._delete(name, address)
        await self._write()

    async def _add_server(self, backend: str, address: str) -> None:
        socket = self.files.runtime_socket
        if self._state.draining.get(address) == backend:  # it came back before its drain ended
            del self._state.draining[address]
        else:
            await runtime.expect(socket, f"add server {backend}/{address} {address} {server_options(self.limits)}",
                                 ok=("New server registered",))  # fmt: skip
            await runtime.expect(socket, f"enable health {backend}/{address}")
        await runtime.expect(socket, f"set server {backend}/{address} state ready")
        self._state.backends[backend].add(address)
        self._since.setdefault(address, self._generation)

    async def _set_map(self, name: str, entries: dict[str, str]) -> None:
        current = self._state.maps[name]
        path = self.files.map(name)
        for key in sorted(current.keys() - entries.keys()):
            await runtime.expect(self.files.runtime_socket, f"del map {path} {key}")
        for key, value in sorted(entries.items()):
            if key not in current:
                await runtime.expect(self.files.runtime_socket, f"add map {path} {key} {value}")
            elif current[key] != value:
                await runtime.expect(self.files.runtime_socket, f"set map {path} {key} {value}")
        self._state.maps[name] = dict(entries)

    async def _idle(self, backend: str, address: str) -> bool:
        for row in await runtime.stats(self.files.runtime_socket, backend):
            if row.get("pxname") == backend and row.get("svname") == address:
                return row.get("scur") == "0" and row.get("qcur") in ("0", "")
        return True  # not in the running worker (a reload since)

    async def _delete(self, backend: str, address: str) -> bool:
        answer = (await runtime.command(self.files.runtime_socket, f"del server {backend}/{address}")).strip()
        if answer.startswith("Server deleted") or "No such" in answer or "Unknown" in answer:
            self._state.draining.pop(address, None)
            self._save()
            return True
        return False  # connections still open (idle ones close within moments)

    async def _write(self) -> None:
        """The configuration, maps and state as HAProxy holds them now: what a reload or restart starts from.

        The configuration is checked (`haproxy -c`) when more than its servers changed since the last one in
        force: a server's line is the one HAProxy parsed when it was added at run time (`server_options`), and
        a check forks a process and keeps a core busy for tens of milliseconds, which a request held for a
        woken app would wait out (every wake and sleep adds and removes servers)."""
        state = self._state
        self._write_maps()
        servers = {name: set(addresses) for name, addresses in state.backends.items()}
        config, structure = (self._render(servers), self._render({name: set() for name in servers}))
        candidate = self.files.config.with_suffix(".new")
        _write_atomically(candidate, config)
        in_force = self.files.config.read_text() if self.files.config.exists() else None
        if in_force != config and structure != self._checked:
            await self.haproxy.check(candidate)
        self._checked = structure
        os.replace(candidate, self.files.config)
        self._save()

    def _render(self, servers: dict[str, set[str]]) -> str:
        return render(
            self.files, self.listeners, servers, threads=self.threads, limits=self.limits,
            activator=self.activator.address or None,
        )  # fmt: skip

    def _write_maps(self) -> None:
        for name in MAPS:
            _write_atomically(self.files.map(name), map_lines(self._state.maps[name]))

    def _save(self) -> None:
        _write_atomically(self.files.root / "state.json", self._state.to_json())

    # watching

    async def _read_log_forever(self) -> None:
        """Empty the FIFO often (its 1 MiB holds ~0.1 s of heavy traffic), in big reads rather than a wake-up
        per line; write and count what came once a second."""
        polls, checks = round(LOG_READ_SECONDS / LOG_POLL_SECONDS), round(DROPPED_CHECK_SECONDS / LOG_READ_SECONDS)
        for second in itertools.count():
            for _ in range(polls):
                await asyncio.sleep(LOG_POLL_SECONDS)
                self._lines.append(self.access_log.read())
            await self._write_log()
            if second % checks == 0:
                await self._count_dropped()

    async def _count_dropped(self) -> None:
        """Add what HAProxy dropped since it was last asked (all it counts, if it started again since)."""
        try:
            count = dropped_logs(await runtime.command(self.files.runtime_socket, "show info"))
        except runtime.HAProxyError:
            return  # asked again later
        if count is None:
            return
        seen, self._dropped_seen = self._dropped_seen, count
        if seen is None:  # its count before this daemon: reported, not added (an earlier daemon may have)
            if count:
                log.warning("front door: HAProxy has dropped %d access-log lines since it started", count)
            return
        lost = count - seen if count >= seen else count
        if lost:
            self.log_lines_dropped += lost
            log.warning("front door: HAProxy dropped %d access-log lines: their requests are not metered", lost)

    async def _write_log(self) -> None:
        lines, self._lines = b"".join(self._lines), []
        if not lines:
            return
        counted = await asyncio.to_thread(_write_and_count, self.access_log, lines)
        bad = unparsed(lines, counted)
        if bad:
            self.log_lines_unparsed += bad
            log.warning("front door: %d access-log lines not understood: their requests are not metered", bad)
        for request, count in counted.items():
            status, *_, ms, tenant, app = request
            if tenant == b"-":
                continue  # no app's
            key = (tenant.decode(), app.decode())
            metrics = self._metrics.get(key) or self._metrics.setdefault(key, RouteMetrics())
            metrics.observe(int(status), int(ms) / 1000, count)
            requests, read, sent = self._usage.get(key, (0, 0, 0))
            bytes_in, bytes_out = wire_bytes(request)
            self._usage[key] = (requests + count, read + bytes_in * count, sent + bytes_out * count)
        routed = {(r.tenant, r.app) for r in self._desired}
        for key in self._metrics.keys() - routed:  # a deleted app's traffic goes with it
            del self._metrics[key]

    async def _watch_forever(self) -> None:
        """Start HAProxy again, from the files, if it died. Judged under the lock, never mid-reload (its pid
        file is rewritten then), and only once its master CLI is silent too: two HAProxys would split the port."""
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            if self.haproxy.pid() is not None:
                continue
            async with self._lock:
                if self.haproxy.pid() is not None or await self.haproxy.answers():
                    continue
                log.warning("front door: HAProxy is gone; starting it again")
                try:
                    await self.haproxy.start(self.access_log.writer())
                except (HAProxyError, runtime.HAProxyError, OSError) as exc:
                    log.error("front door: %s", exc)  # tried again next second


def _write_and_count(log: AccessLog, lines: bytes) -> "Counter[Request]":
    """In a worker thread: append the lines to the access log, and count each app's requests in them."""
    log.append(lines)
    return traffic(lines)


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
