"""Every hostname the front door serves gets a certificate, and keeps one.

Where it comes from: a certificate the operator installed for that hostname wins and is never replaced; a
name under `.localhost` (the default domain) is signed by the platform's local CA (Caddy's and mkcert's model;
the CA is constrained to those names, so trusting it trusts nothing else); every other name is ordered over
ACME (HTTP-01, answered by the front door), or, with no ACME server configured, gets none (its app serves over
HTTP, and `strata certs list` says why). A certificate is renewed once a third of its lifetime is left. A
failed order is recorded (`strata certs list` shows it), tried again later with a growing pause, and the app
keeps serving over HTTP.

Certificates live in the `CertStore` (0600 files under `STRATA_HOME`); one already there and not due is served
as it is — a restart orders nothing.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.acme import AcmeError, AcmeIssuer
from gateway.certs import Certificate, CertificateError, CertStore, LocalCA, StoredCertificate, check_hostname
from gateway.runtime import HAProxyError

log = logging.getLogger(__name__)

LOCAL_SUFFIX = ".localhost"
CHECK_SECONDS = 600.0  # renewals are looked for this often (new hostnames at once)
FIRST_RETRY = timedelta(minutes=1)
LAST_RETRY = timedelta(hours=6)

Serve = Callable[[Path], Awaitable[None]]  # load a combined PEM file into the front door (or take it out)


class Certificates:
    def __init__(
        self,
        store: CertStore,
        local_ca: LocalCA,
        serve: Serve,
        unserve: Serve,
        acme: AcmeIssuer | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.local_ca = local_ca
        self.serve = serve
        self.unserve = unserve
        self.acme = acme
        self.clock = clock
        self._wanted: set[str] = set()
        self._retry_at: dict[str, tuple[datetime, timedelta]] = {}
        self._changed = asyncio.Event()

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

    async def install(self, hostname: str, chain_pem: bytes, key_pem: bytes) -> StoredCertificate:
        """An operator's certificate for `hostname` (and the others it names): checked, stored, served at once;
        the platform never orders one for a name it covers."""
        certificate = Certificate.from_pem(chain_pem, key_pem)
        if not certificate.covers(check_hostname(hostname)):
            raise CertificateError(f"the certificate names {', '.join(certificate.hostnames)}, not {hostname}")
        path = self.store.save(certificate, "operator")
        await self.serve(path)
        for other in self.store.all():  # what it covers is the operator's now: the platform's own go
            if other.source not in (None, "operator") and certificate.covers(other.hostname):
                await self.unserve(other.path)
                self.store.remove(other.hostname)
        stored = self.store.get(certificate.hostnames[0])
        assert stored is not None
        return stored

    async def run(self) -> None:
        """Serve every stored certificate, then keep the wanted hostnames covered, forever."""
        for stored in self.store.all():
            if stored.certificate is not None:
                await self._serve(stored.path)
        while True:
            await self.obtain_missing_and_due()
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), CHECK_SECONDS)
            except TimeoutError:
                pass

    async def obtain_missing_and_due(self) -> None:
        """Order (or sign) a certificate for each wanted hostname that has none valid, or one due."""
        now = self.clock()
        for hostname in sorted(self._wanted):
            if self._operators_cover(hostname):
                continue
            stored = self.store.get(hostname)
            if stored is not None and stored.certificate is not None and stored.certificate.renew_at() > now:
                continue
            retry = self._retry_at.get(hostname)
            if retry is not None and retry[0] > now:
                continue
            try:
                await self._obtain(hostname, now)
            except (HAProxyError, CertificateError, OSError) as exc:  # one name's trouble stops no other's
                log.error("certificate for %s: %s", hostname, exc)

    async def _obtain(self, hostname: str, now: datetime) -> None:
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
            pause = min(self._retry_at.get(hostname, (now, FIRST_RETRY / 2))[1] * 2, LAST_RETRY)
            self._retry_at[hostname] = (now + pause, pause)
            self.store.record_error(hostname, str(exc))
            log.warning("certificate for %s: %s (again in %s)", hostname, exc, pause)
            return
        self._retry_at.pop(hostname, None)
        if self._operators_cover(hostname):
            return  # an operator installed one while this was ordered: theirs stays
        path = self.store.save(certificate, "acme" if source == "acme" else "local")
        await self._serve(path)
        log.info("certificate for %s from %s, valid until %s", hostname, certificate.issuer, certificate.not_after)

    def _operators_cover(self, hostname: str) -> bool:
        return any(
            stored.source == "operator" and stored.certificate is not None and stored.certificate.covers(hostname)
            for stored in self.store.all()
        )

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
