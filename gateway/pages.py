"""The answers the gateway gives itself: short, complete responses that name no tenant and no app."""

REASONS = {
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}
MESSAGES = {
    404: b"No app is served at this address.",
    405: b"This gateway opens no tunnels (CONNECT).",
    408: b"The request took too long to arrive.",
    413: b"The request body is larger than this app accepts.",
    429: b"Too many requests; slow down and retry later.",
    502: b"The app could not be reached.",
    503: b"The app has no instance ready to answer; retry shortly.",
    504: b"The app took too long to answer.",
}


def body_length(response: bytes) -> int:
    """The body's bytes of a whole response (what the access log and the metrics count as sent)."""
    return len(response) - response.index(b"\r\n\r\n") - 4


def page(status: int, *, close: bool = False, retry_after: int | None = None, request_id: bytes = b"") -> bytes:
    """A whole HTTP/1.1 response with a small HTML body."""
    reason = REASONS.get(status, b"Error")
    message = MESSAGES.get(status, reason + b".")
    body = b"<!doctype html><title>%d %s</title><h1>%d %s</h1><p>%s</p>\n" % (status, reason, status, reason, message)
    headers = [
        b"HTTP/1.1 %d %s\r\n" % (status, reason),
        b"Content-Type: text/html; charset=utf-8\r\n",
        b"Content-Length: %d\r\n" % len(body),
        b"Cache-Control: no-store\r\n",
    ]
    if retry_after is not None:
        headers.append(b"Retry-After: %d\r\n" % retry_after)
    if request_id:
        headers.append(b"X-Request-Id: %s\r\n" % request_id)
    if close:
        headers.append(b"Connection: close\r\n")
    return b"".join(headers) + b"\r\n" + body
