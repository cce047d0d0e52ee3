"""The HTTP front door: route table, reverse proxy, per-route metrics, rate limits.

It learns routes through one narrow interface the control plane fills (`Gateway.apply` with `RouteSpec`s),
and imports no `hosting`, no `tui`.
"""

from gateway.admin import serve_admin
from gateway.limits import Limits
from gateway.metrics import Traffic
from gateway.routes import RouteSpec
from gateway.server import Gateway

__all__ = ["Gateway", "Limits", "RouteSpec", "Traffic", "serve_admin"]
