"""Which SSH connections to take, by source address, after OpenSSH's PerSourceMaxStartups and PerSourcePenalties.

A scanner or a flood (ssh-audit opened 38 connections in 7 ms) is dropped before the handshake, costing the
server nothing; a source that keeps failing to log in is refused for a while.
"""

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# Throttling by source address, after OpenSSH's PerSourceMaxStartups and PerSourcePenalties (whose defaults are
# 5 s, 1 s and 15 s: here ten quick failed logins, not three, make a source refused).
MAX_STARTUPS_PER_SOURCE = 10  # connections not yet authenticated at once; more are dropped at once
AUTHFAIL_PENALTY_SECONDS = 2.0  # a connection that tried to log in and ended without succeeding
NOAUTH_PENALTY_SECONDS = 1.0  # one that ended without trying (a scan, a DHEat flood)
PENALTY_MIN_SECONDS = 20.0  # a source is refused once its penalties add up to this, until they run out
PENALTY_MAX_SECONDS = 600.0


@dataclass
class Throttle:
    """Which connections to take, by source address, as OpenSSH's PerSourceMaxStartups and PerSourcePenalties:
    at most MAX_STARTUPS_PER_SOURCE unauthenticated connections at once; each that ends unauthenticated adds
    to its source's penalty, and a source whose penalty adds up to PENALTY_MIN_SECONDS is refused until it
    runs out. Refused connections are dropped before the handshake, costing the server nothing."""

    starting: Counter[str] = field(default_factory=Counter)
    penalties: dict[str, tuple[float, bool]] = field(default_factory=dict)  # source: (runs out at, refusing)

    def admit(self, source: str) -> bool:
        """Take a new connection from `source`? If so, it counts as starting until `authenticated` or `ended`."""
        until, refusing = self.penalties.get(source, (0.0, False))
        if (refusing and until > time.monotonic()) or self.starting[source] >= MAX_STARTUPS_PER_SOURCE:
            return False
        self.starting[source] += 1
        return True

    def authenticated(self, source: str) -> None:
        self._started(source)

    def ended(self, source: str, tried: bool) -> None:
        """An admitted connection ended unauthenticated, having `tried` to log in or not: penalise its source."""
        self._started(source)
        now = time.monotonic()
        self.penalties = {s: p for s, p in self.penalties.items() if p[0] > now}  # forget the served ones
        until, refusing = self.penalties.get(source, (now, False))
        until = min(until + (AUTHFAIL_PENALTY_SECONDS if tried else NOAUTH_PENALTY_SECONDS), now + PENALTY_MAX_SECONDS)
        if not refusing and until - now >= PENALTY_MIN_SECONDS:
            log.warning("SSH: refusing %s for %.0f s: too many failed or idle connections", source, until - now)
            refusing = True
        self.penalties[source] = (until, refusing)

    def _started(self, source: str) -> None:
        self.starting[source] -= 1
        if not self.starting[source]:
            del self.starting[source]
