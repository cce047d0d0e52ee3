"""Every bound of the gateway, as one settings object. Sizes in bytes, times in seconds."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_request_line: int = 8 * 1024  # method + target + version
    max_header_bytes: int = 32 * 1024  # all request headers together
    max_headers: int = 100
    header_timeout: float = 10.0  # from a request's first byte to its last header: cuts off slowloris
    idle_timeout: float = 60.0  # a keep-alive client connection with no request
    connect_timeout: float = 5.0  # to an upstream instance
    upstream_timeout: float = 60.0  # from the request sent to the response's head (then 504)
    upstream_idle_timeout: float = 30.0  # a pooled upstream connection: below the apps' own keep-alive
    max_idle_per_endpoint: int = 64  # pooled keep-alive connections per instance
    eject_after_failures: int = 3  # connection failures in a row that take an instance out of rotation...
    eject_seconds: float = 10.0  # ...for this long
    drain_timeout: float = 30.0  # the longest a removed instance's in-flight requests are waited for
    max_pipelined: int = 16  # requests read ahead of the one being answered
