"""Every bound of the front door, as one settings object. Sizes in bytes, times in seconds.

Headers are bounded by HAProxy itself: its 16 KiB buffer for a request's head and 101 header lines (400 past
either).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_request_line: int = 8 * 1024  # the request target (414 past it)
    header_timeout: float = 10.0  # from a request's first byte to its last header: cuts off slowloris (408)
    idle_timeout: float = 60.0  # a keep-alive client connection with no request, or a client silent mid-body
    connect_timeout: float = 5.0  # to an upstream instance
    upstream_timeout: float = 60.0  # an instance silent this long while answering (504)
    # Requests HAProxy has open to one instance at once; the rest wait in its queue (503 after `queue_timeout`).
    # A burst of new connections at once overflows a small listen backlog (busybox's servers: one or two), and a
    # dropped SYN waits out the kernel's retransmissions (1, 3, 7 s...), or the request hangs until the upstream
    # timeout (504): measured on strata/hello, 100 at a time hung some at 32 and 64, none at 16. A WebSocket
    # counts while open (as on Fly.io, whose default is 25 a machine): an app needing more runs more replicas.
    instance_connections: int = 16
    queue_timeout: float = 30.0  # the longest a request waits in HAProxy's queue for an instance (503 past it)
    drain_timeout: float = 30.0  # the longest a removed instance's in-flight requests are waited for
    old_worker_timeout: float = 300.0  # a worker of an earlier configuration ends its connections after this
