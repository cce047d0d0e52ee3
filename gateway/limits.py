"""Every bound of the gateway, in one place. Sizes in bytes, times in seconds."""

MAX_REQUEST_LINE = 8 * 1024  # method + target + version
MAX_HEADER_BYTES = 32 * 1024  # all request headers together
MAX_HEADERS = 100
HEADER_TIMEOUT = 10.0  # from a request's first byte to its last header: cuts off slowloris
IDLE_TIMEOUT = 60.0  # a keep-alive client connection with no request
BODY_TIMEOUT = 60.0  # between two pieces of a request body
CONNECT_TIMEOUT = 5.0  # to an upstream instance
UPSTREAM_TIMEOUT = 60.0  # from the request sent to the response's head (then 504)
UPSTREAM_IDLE_TIMEOUT = 30.0  # a pooled upstream connection; below the apps' own keep-alive, to avoid races
MAX_IDLE_PER_ENDPOINT = 64  # pooled keep-alive connections per instance
EJECT_AFTER_FAILURES = 3  # connection failures in a row that take an instance out of rotation...
EJECT_SECONDS = 10.0  # ...for this long
DRAIN_TIMEOUT = 30.0  # the longest a removed instance's in-flight requests are waited for
MAX_PIPELINED = 16  # requests read ahead of the one being answered
