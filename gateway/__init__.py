"""The front door's controller: HAProxy carries the bytes (`gateway.haproxy`), Python decides what it serves.

It learns routes through one narrow interface the control plane fills (`FrontDoor.apply` with `RouteSpec`s),
and imports no `hosting`, no `tui`.
"""

from gateway.config import Listeners
from gateway.frontdoor import FrontDoor
from gateway.limits import Limits
from gateway.metrics import Traffic
from tenants.routes import RouteSpec

__all__ = ["FrontDoor", "Limits", "Listeners", "RouteSpec", "Traffic"]
