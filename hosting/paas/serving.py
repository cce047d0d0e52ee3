"""What the reconciler tells the front door: each app's hostnames, its ready endpoints, its tenant's limits.

The daemon turns these into the gateway's routes; neither side imports the other.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ServedApp:
    tenant: str
    app: str
    hostnames: tuple[str, ...]
    endpoints: tuple[str, ...]  # HOST:PORT of each ready instance
    requests_per_second: int
    burst: int
    max_body_mib: int
