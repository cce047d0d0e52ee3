"""What `Certificates` needs of the store every daemon's front door shares (`strata.shared_certificates` keeps it in
the database): each primary hostname's certificate, its last failed order, and a claim so that one daemon orders a
name at a time. The methods block (a database): call them in a worker thread."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from gateway.certs import Certificate, Source, covers, renew_at


@dataclass(frozen=True)
class Entry:
    """A primary hostname's state, without its key. `fingerprint` is None while no certificate is stored (an
    order under way, or failed: `last_error`, tried again from `retry_at` after a pause of `retry`)."""

    hostname: str
    hostnames: tuple[str, ...]
    source: Source | None
    fingerprint: str | None
    issuer: str | None
    not_before: datetime | None
    not_after: datetime | None
    last_error: str | None
    retry_at: datetime | None
    retry: timedelta | None

    def renew_at(self) -> datetime | None:
        """When it is due for renewal; None without a certificate."""
        if self.not_before is None or self.not_after is None or self.fingerprint is None:
            return None
        return renew_at(self.not_before, self.not_after)

    def covers(self, hostname: str) -> bool:
        """Whether its certificate names `hostname`."""
        return self.fingerprint is not None and covers(self.hostnames, hostname)


class Ledger(Protocol):
    def entries(self) -> list[Entry]:
        """Every primary hostname's entry."""
        ...

    def certificate(self, hostname: str) -> Certificate | None:
        """The certificate stored for `hostname` with its key; None if there is none (or it cannot be unsealed)."""
        ...

    def claim(self, hostname: str, now: datetime, until: datetime, *, seen: str | None) -> bool:
        """Whether this daemon may order `hostname` now, until `until`: False while another's claim lasts, and
        when its entry changed since it was read (`seen`: its fingerprint then) or a failed order's pause lasts —
        another daemon ordered it meanwhile."""
        ...

    def put(self, certificate: Certificate, source: Source) -> bool:
        """Store `certificate` under its primary hostname (its error and the claim go); False if an operator's
        certificate is there and this one is not an operator's (it is never replaced)."""
        ...

    def fail(self, hostname: str, message: str, retry_at: datetime, retry: timedelta) -> None:
        """Record a failed order (a stored certificate stays) and when to try again; the claim ends."""
        ...

    def remove(self, hostname: str) -> None: ...
