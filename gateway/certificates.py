"""Every hostname the front door serves gets a certificate, and keeps one — one for every daemon's door.

Where it comes from: a certificate the operator installed for that hostname wins and is never replaced; a
name under `.localhost` (the default domain) is signed by the platform's local CA (Caddy's and mkcert's model;
the CA is constrained to those names, so trusting it trusts nothing else); every other name is ordered over
ACME (HTTP-01, answered by the front door), or, with no ACME server configured, gets none (its app serves over
HTTP, and `strata certs list` says why). A certificate is renewed once a third of its lifetime is left. A
failed order is recorded (`strata certs list` shows it), tried again later with a growing pause, and the app
keeps serving over HTTP.

Certificates are kept in the `Ledger` every daemon shares (the database): a daemon claims a name before it orders
it, so one order per name serves every door (a CA's rate limits count orders). Each door serves exactly the
ledger's certificates, read every `SYNC_SECONDS`, from its `CertStore` (0600 files that HAProxy loads); one already
there and unchanged is served as it is — a restart orders nothing.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from gateway.acme import AcmeError, AcmeIssuer
from gateway.cert_ledger import Entry, Ledger
from gateway.certs import Certificate, CertificateError, CertStore, LocalCA, Source, check_hostname
from gateway.runtime import HAProxyError

log = logging.getLogger(__name__)

LOCAL_SUFFIX = ".localhost"
SYNC_SECONDS = 1.0  # the ledger is read this often: another daemon's new certificate is served within it
ORDER_LEASE = timedelta(minutes=10)  # a claim outlasts any order (ACME's 60 s): a daemon that died holding it
FIRST_RETRY = timedelta(minutes=1)
LAST_RETRY = timedelta(hours=6)

Serve = Callable[[Path], Awaitable[None]]  # load a combined PEM file into the front door (or take it out)


class Certificates:
    def __init__(
        self,
        ledger: Ledger,
        store: CertStore,
        local_ca: LocalCA,
        serve: Serve,
        unserve: Serve,
        acme: AcmeIssuer | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.local_ca = local_ca
        self.serve = serve
        self.unserve = unserve
        self.acme = acme
        self.clock = clock
        self._wanted: set[str] = set()
        self._served: dict[str, tuple[str, Path]] | None = None  # primary hostname -> (fingerprint, file) stored
        self._changed = asyncio.Event()
        self._syncing = asyncio.Lock()

    def want(self, hostnames: Iterable[str]) -> None:
        """These hostnames are served now: each gets a certificate (those no longer served keep theirs)."""
        wanted = {name.lower() for name in hostnames if _valid_name(name.lower())}
        if wanted - self._wanted:
            self._changed.set()
        self._wanted = wanted

    def source_for(self, hostname: str) -> str | None:
        """`local` (the local CA), `acme`, or None: no ACME server for a name outside `.localhost`."""
        if _is_local(hostname):
            return "local"
        return "acme" if self.acme is not None else None

    async def entries(self) -> list[Entry]:
        """Every hostname's entry in the ledger: what every door serves, and the last errors ordering them."""
        return await asyncio.to_thread(self.ledger.entries)

    async def install(self, hostname: str, chain_pem: bytes, key_pem: bytes) -> Entry:
        """An operator's certificate for `hostname` (and the others it names): checked, stored, served at once by
        this door (by the others within `SYNC_SECONDS`); the platform never orders one for a name it covers."""
        certificate = Certificate.from_pem(chain_pem, key_pem)
        if not certificate.covers(check_hostname(hostname)):
            raise CertificateError(f"the certificate names {', '.join(certificate.hostnames)}, not {hostname}")
        await asyncio.to_thread(self.ledger.put, certificate, "operator")
        await self.sync()
        entries = {entry.hostname: entry for entry in await self.entries()}
        return entries[certificate.hostnames[0]]

    async def run(self) -> None:
        """Serve the ledger's certificates, and keep the wanted hostnames covered, forever."""
        while True:
            try:
                await self.reconcile()
            except Exception as exc:  # the database is out of reach a moment: the door serves what it has
                log.warning("certificates not read from the database: %s", exc)
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), SYNC_SECONDS)
            except TimeoutError:
                pass

    async def reconcile(self) -> None:
        """Serve the ledger's certificates; then order (or sign) one for each wanted hostname that has none
        valid, or one due, unless another daemon is ordering it or a failed order's pause lasts."""
        entries = await self.sync()
        now = self.clock()
        ordered = False
        for hostname in sorted(self._wanted):
            if any(entry.source == "operator" and entry.covers(hostname) for entry in entries):
                continue
            entry = next((entry for entry in entries if entry.hostname == hostname), None)
            renew_at = entry.renew_at() if entry is not None else None
            if renew_at is not None and renew_at > now:
                continue
            if entry is not None and entry.retry_at is not None and entry.retry_at > now:
                continue
            seen = entry.fingerprint if entry is not None else None
            if not await asyncio.to_thread(partial(self.ledger.claim, hostname, now, now + ORDER_LEASE, seen=seen)):
                continue  # another daemon orders it: its certificate comes through the ledger
            ordered = True
            try:
                await self._obtain(hostname, entry, now)
            except Exception as exc:  # one name's trouble (the database's a moment, too) stops no other's
                log.error("certificate for %s: %s", hostname, exc)
        if ordered:
            await self.sync()  # what was just stored is served at once

    async def sync(self) -> list[Entry]:
        """Make this door serve exactly the ledger's certificates (the platform's that an operator's covers are
        dropped from it first); the ledger's entries. One at a time: one begun on an older read would unserve
        what another (an operator's `install`) had just served."""
        async with self._syncing:
            return await self._sync()

    async def _sync(self) -> list[Entry]:
        if self._served is None:  # first: what the store holds is served as it is, the database reachable or not
            self._served = {}
            for stored in self.store.all():
                self._served[stored.hostname] = (stored.certificate.fingerprint(), stored.path)
                await self._serve(stored.path)
        entries = await self.entries()
        if not self.store.shared():
            entries = await self._share_kept(entries)
        operators = [entry for entry in entries if entry.source == "operator"]
        covered = {e.hostname for e in entries if e not in operators and any(o.covers(e.hostname) for o in operators)}
        for hostname in sorted(covered):
            await asyncio.to_thread(self.ledger.remove, hostname)
        entries = [entry for entry in entries if entry.hostname not in covered]
        shared = {entry.hostname: entry for entry in entries if entry.fingerprint is not None}
        for hostname, entry in shared.items():
            served = self._served.get(hostname)
            if served is None or served[0] != entry.fingerprint:
                certificate = await asyncio.to_thread(self.ledger.certificate, hostname)
                if certificate is not None and entry.source is not None:
                    path = self.store.save(certificate, entry.source)
                    self._served[hostname] = (certificate.fingerprint(), path)
                    await self._serve(path)
        for hostname in sorted(self._served.keys() - shared.keys()):
            path = self._served.pop(hostname)[1]
            try:
                await self.unserve(path)
            except (HAProxyError, OSError) as exc:
                log.error("unserving certificate %s: %s", path.name, exc)
            self.store.remove(hostname)
        return entries

    async def _share_kept(self, entries: list[Entry]) -> list[Entry]:
        """Put the certificates a store kept before certificates were shared (an upgrade) in the ledger, where it
        has none for their names, once: they are served on, and not ordered again. Not the local CA's: the
        platform's CA may be another daemon's now (it is signed again for free). The ledger's entries after."""
        held = {entry.hostname for entry in entries if entry.fingerprint is not None}
        for stored in self.store.all():
            if stored.hostname not in held and stored.source != "local":
                await asyncio.to_thread(self.ledger.put, stored.certificate, stored.source)
        self.store.drop_unissued()
        self.store.mark_shared()
        return await self.entries()

    async def _obtain(self, hostname: str, entry: Entry | None, now: datetime) -> None:
        source = self.source_for(hostname)
        try:
            if source is None:
                raise CertificateError(
                    "no ACME server is configured (STRATA_ACME_DIRECTORY) and the local CA signs names under "
                    ".localhost only: served over HTTP"
                )
            if source == "acme":
                assert self.acme is not None
                chain, key = await self.acme.order([hostname])
                certificate = Certificate.from_pem(chain, key)
            else:
                certificate = self.local_ca.issue([hostname], now=now)
        except (AcmeError, CertificateError, HAProxyError, OSError) as exc:
            last = entry.retry if entry is not None and entry.retry is not None else FIRST_RETRY / 2
            pause = min(last * 2, LAST_RETRY)
            await asyncio.to_thread(self.ledger.fail, hostname, str(exc), now + pause, pause)
            log.warning("certificate for %s: %s (again in %s)", hostname, exc, pause)
            return
        kind: Source = "acme" if source == "acme" else "local"
        if await asyncio.to_thread(self.ledger.put, certificate, kind):
            log.info("certificate for %s from %s, valid until %s", hostname, certificate.issuer, certificate.not_after)

    async def _serve(self, path: Path) -> None:
        """Load a stored certificate into the front door; one it cannot take now is loaded on its next reload
        or restart (the crt-list names it) — logged, never fatal."""
        try:
            await self.serve(path)
        except (HAProxyError, OSError) as exc:
            log.error("serving certificate %s: %s", path.name, exc)


def _is_local(hostname: str) -> bool:
    return hostname == "localhost" or hostname.endswith(LOCAL_SUFFIX)


def _valid_name(hostname: str) -> bool:
    try:
        check_hostname(hostname)
    except CertificateError:
        return False
    return True
