"""The one value the control plane hands the front door: an app as it must be served.

The reconciler makes them (`hosting.paas.serving`) and the front door serves them (`gateway.frontdoor`); it lives
here, on the ground floor both may stand on, so neither imports the other and no copy is written by hand.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class RouteSpec:
    """One app as the gateway must serve it: its hostnames, its ready instances, its tenant's limits, and what
    it asked of HTTPS (the last fields, with defaults, so a RouteSpec built with the first seven still is one)."""

    tenant: str
    app: str
    hostnames: tuple[str, ...]  # extra hostnames; `<app>.<tenant>.<domain>` is implied
    endpoints: tuple[str, ...]  # HOST:PORT of each ready instance
    requests_per_second: int
    burst: int
    max_body_bytes: int
    redirect_https: bool = False  # answer plain-HTTP requests with a 308 to the same URL over https
    hsts: bool = False  # add Strict-Transport-Security to the app's HTTPS answers


@dataclass(frozen=True)
class Activity:
    """What the front door tells the control plane of one app's traffic: seconds since it last sent the app a
    request (None: not since its worker started), and the requests it has in flight to the app now."""

    idle_seconds: float | None
    in_flight: int
