"""HAProxy's configuration, rendered from what the front door must serve.

One frontend routes every request: the hostname → backend map, the tenant's request rate (a stick table keyed by
tenant, compared with its limit from a map) and body limit (from a map), hostile input refused, `X-Forwarded-*`
and `X-Request-Id` set. One backend per app, its servers the app's ready instances. Maps and servers change at
run time through the runtime API (`gateway.runtime`); the files written here are what a reload or a restart of
HAProxy starts from, so they are rewritten after every change.

Every `http-request` rule of the frontend runs before `use_backend`, so the order below is the order of checks.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.limits import Limits
from gateway.pages import page

Address = tuple[str, int]

# Options of every server, static or added at run time (`default-server` does not reach dynamic servers):
# passive checks eject an instance after three failed connections in a row, and active TCP checks bring it
# back after `downinter`; the reconciler's own health checks decide whether it is routed at all. `maxconn`
# (`server_options`) bounds the requests open to it at once.
SERVER_CHECKS = "check inter 10s downinter 10s fall 3 rise 1 observe layer4 error-limit 3 on-error mark-down"
# The activator (`gateway.activator`): used only while no other server of the backend is ready, with no
# connection kept for reuse (each one it takes carries one request to a woken instance), and not checked.
ACTIVATOR = "activator"
ACTIVATOR_OPTIONS = "backup pool-max-conn 0"
# Mozilla's "intermediate" profile: TLS 1.2 with AEAD ciphers and forward secrecy only, and TLS 1.3.
CIPHERS = ":".join(
    f"ECDHE-{kind}-{cipher}"
    for cipher in ("AES128-GCM-SHA256", "AES256-GCM-SHA384", "CHACHA20-POLY1305")
    for kind in ("ECDSA", "RSA")
)
CIPHERSUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
UNLIMITED = 1 << 40
HSTS_SECONDS = 365 * 24 * 3600
RATE_TABLE = "strata_rates"
# The access log, one JSON object per line. Strings from the request are escaped by `json(utf8s)`; HAProxy
# writes "-" for a value it does not have (the tenant and app of what was routed to no app). "server" is the
# instance that answered, "end" HAProxy's termination state ("--" for a normal end, "SH" the instance closed
# before its headers, ... as in its manual's section 8.5). "bytes" were sent to the client and "bytes_in" read
# from it as HAProxy holds a message (`%B`, `%U`); "framing" and "framing_in" are what HTTP/1 adds to that on the
# wire (`_framing`): their sums are what usage metering counts.
LOG_FORMAT = (
    '{"time":%Ts.%ms,"id":"%[var(txn.rid),json(utf8s)]","client":"%ci","host":"%[var(txn.host),json(utf8s)]",'
    '"method":"%HM","target":"%[capture.req.uri,json(utf8s)]","status":%ST,"bytes":%B,"bytes_in":%U,'
    '"framing":%[var(txn.framing_out,0)],"framing_in":%[var(txn.framing_in,0)],"ms":%Ta,'
    '"tenant":"%[var(txn.tenant)]","app":"%[var(txn.backend),field(2,.)]","tls":"%[ssl_fc_protocol]",'
    '"server":"%s","end":"%ts"}'
)
# What never became a request: a head HAProxy could not read (400) or that came too slowly (408), a failed TLS
# handshake (status 0).
ERROR_LOG_FORMAT = (
    '{"time":%Ts.%ms,"id":"-","client":"%ci","host":"-","method":"-","target":"-","status":%ST,"bytes":%B,'
    '"bytes_in":%U,"framing":0,"framing_in":0,"ms":%Ta,"tenant":"-","app":"-","tls":"%[ssl_fc_protocol]",'
    '"error":"%[fc_err_str,json(utf8s)]"}'
)
DEFAULT_LIMITS = Limits()
PAGES = (400, 403, 404, 405, 408, 413, 429, 500, 502, 503, 504)
RETRY_AFTER = {429: 1, 503: 1}
# HAProxy closes the client's connection after these (a 502 at least when the instance reset the connection):
# said in the answer, or a client that sends its next request on the connection at once meets a closed socket
CLOSING = (400, 408, 502)


@dataclass(frozen=True)
class Listeners:
    """Where the front door listens: apps over HTTP, over HTTPS (optional), and its admin listener."""

    http: Address
    https: Address | None = None
    admin: Address | None = None


@dataclass(frozen=True)
class Files:
    """Everything HAProxy reads or serves from, under one directory (0700) of `STRATA_HOME`."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "haproxy.cfg"

    @property
    def runtime_socket(self) -> Path:
        return self.root / "admin.sock"

    @property
    def master_socket(self) -> Path:
        return self.root / "master.sock"

    @property
    def pid(self) -> Path:
        return self.root / "haproxy.pid"

    @property
    def certs(self) -> Path:
        return self.root / "certs.list"

    @property
    def default_cert(self) -> Path:
        return self.root / "default.pem"

    def map(self, name: str) -> Path:
        return self.root / f"{name}.map"

    def page(self, status: int) -> Path:
        return self.root / "pages" / f"{status}.http"


MAPS = ("hosts", "rates", "bodies", "challenges", "redirects", "hsts")


def backend_name(tenant: str, app: str) -> str:
    """`acme.web`: names are DNS labels, so the dot separates them unambiguously."""
    return f"{tenant}.{app}"


def render(
    files: Files,
    listeners: Listeners,
    backends: Mapping[str, Iterable[str]],
    *,
    threads: int = 1,
    limits: Limits = DEFAULT_LIMITS,
    activator: str | None = None,
) -> str:
    """The whole configuration: `backends` maps each backend's name to its servers' HOST:PORT; `activator`
    (HOST:PORT) is every backend's backup server, taking the requests of an app with no ready instance."""
    lines = [
        "global",
        "    master-worker",
        f"    stats socket {files.runtime_socket} mode 600 level admin expose-fd listeners",
        "    stats timeout 1m",
        f"    nbthread {threads}",
        "    log stdout len 16384 format raw local0 info",  # a whole line for the longest target (8 KiB)
        f"    hard-stop-after {int(limits.old_worker_timeout)}s",
        f"    ssl-default-bind-ciphers {CIPHERS}",
        f"    ssl-default-bind-ciphersuites {CIPHERSUITES}",
        "    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets",
        "",
        "defaults",
        "    mode http",
        "    no log",  # backends log no notices about their servers: the access log holds requests only
        f"    log-format '{LOG_FORMAT}'",
        f"    error-log-format '{ERROR_LOG_FORMAT}'",
        "    option idle-close-on-response",
        *(f"    errorfile {status} {files.page(status)}" for status in PAGES),
        f"    timeout connect {_ms(limits.connect_timeout)}",
        f"    timeout queue {_ms(limits.queue_timeout)}",
        f"    timeout client {_ms(limits.idle_timeout)}",
        f"    timeout server {_ms(limits.upstream_timeout)}",
        f"    timeout http-request {_ms(limits.header_timeout)}",
        f"    timeout http-keep-alive {_ms(limits.idle_timeout)}",
        "    timeout tunnel 1h",
        "    retries 1",
        "    option redispatch 1",
        # A refused connection is retried on another instance for any method: nothing reached the app. An
        # instance that closes without a byte of answer (docker-proxy does so for a container whose process is
        # gone or not listening yet) is retried only for idempotent methods (`disable-l7-retry` below).
        "    retry-on conn-failure empty-response",
        "",
        f"backend {RATE_TABLE}",
        "    stick-table type string len 64 size 100k expire 10s store http_req_rate(1s)",
        "",
        *_frontend(files, listeners, limits),
    ]
    if listeners.admin is not None:
        lines += [
            "frontend strata_admin",
            f"    bind {_bind(listeners.admin)}",
            "    no log",
            "    http-request use-service prometheus-exporter if { path /metrics }",
            '    http-request return status 200 content-type text/plain string "ok\\n" if { path /healthz }',
            "    http-request deny deny_status 404",
            "",
        ]
    for name in sorted(backends):
        lines += [
            f"backend {name}",
            "    balance leastconn",  # no server ready: the activator (or, without one, our 503 with Retry-After)
            *(f"    server {address} {address} {server_options(limits)}" for address in sorted(backends[name])),
            *([f"    server {ACTIVATOR} {activator} {ACTIVATOR_OPTIONS}"] if activator else []),
            "",
        ]
    return "\n".join(lines)


def server_options(limits: Limits) -> str:
    """An instance's server options: its checks, and at most `instance_connections` requests at once."""
    return f"{SERVER_CHECKS} maxconn {limits.instance_connections}"


def _frontend(files: Files, listeners: Listeners, limits: Limits) -> list[str]:
    maps = {name: files.map(name) for name in MAPS}
    binds = [f"    bind {_bind(listeners.http)}"]
    if listeners.https is not None:
        binds.append(
            f"    bind {_bind(listeners.https)} ssl crt {files.default_cert} crt-list {files.certs} "
            "strict-sni alpn h2,http/1.1"
        )
    return [
        "frontend strata",
        *binds,
        "    log global",
        "    unique-id-format %{+X}o%ci%cp%Ts%rt",
        *_framing(),
        # a body's first 16 KiB before the app is asked, a slow client is 408 (`option http-buffer-request`, as a
        # rule so that the one above sees an `Expect: 100-continue` before HAProxy answers and drops it)
        f"    http-request wait-for-body time {_ms(limits.header_timeout)}",
        # refused before anything else: what could be read two ways, or opens a tunnel
        "    http-request deny deny_status 405 if METH_CONNECT",
        "    http-request deny deny_status 400 unless HTTP_1.0 or HTTP_1.1 or HTTP_2.0",
        "    http-request deny deny_status 400 if { req.hdrs -m reg \\\\x00 }",
        "    http-request deny deny_status 400 if { req.hdr(host) -m sub @ }",
        "    http-request deny deny_status 400 if { url -m reg ^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*@ }",
        f'    http-request return status 414 content-type text/plain string "URI too long" '
        f"if {{ url_len gt {limits.max_request_line} }}",
        "    http-request deny deny_status 400 if HTTP_1.1 !{ req.hdr_cnt(host) gt 0 }",
        "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower",
        # ACME's HTTP-01 challenges, answered for any hostname (a certificate is ordered before an app serves)
        f"    http-request set-var(txn.acme) path,field(4,/),map({maps['challenges']}) "
        "if { path_beg /.well-known/acme-challenge/ }",
        '    http-request return status 200 content-type text/plain lf-string "%[var(txn.acme)]" '
        "if { var(txn.acme) -m found }",
        f"    http-request set-var(txn.backend) var(txn.host),map({maps['hosts']})",
        "    http-request deny deny_status 404 unless { var(txn.backend) -m found }",
        *_redirect(listeners, maps["redirects"]),
        f'    http-response set-header Strict-Transport-Security "max-age={HSTS_SECONDS}" '
        f"if {{ ssl_fc }} {{ var(txn.backend),map({maps['hsts']}) -m found }}",
        "    http-request set-var(txn.tenant) var(txn.backend),field(1,.)",
        f"    http-request track-sc0 var(txn.tenant) table {RATE_TABLE}",
        f"    http-request set-var(txn.rate) var(txn.tenant),map({maps['rates']},{UNLIMITED})",
        "    http-request deny deny_status 429 if { sc_http_req_rate(0),sub(txn.rate) gt 0 }",
        f"    http-request set-var(txn.body) var(txn.tenant),map({maps['bodies']},{UNLIMITED})",
        "    http-request deny deny_status 413 if { req.hdr_val(content-length),sub(txn.body) gt 0 }",
        "    http-request deny deny_status 413 if { req.body_size,sub(txn.body) gt 0 }",  # chunked, as far as buffered
        '    http-request set-header X-Forwarded-For "%[req.fhdr(x-forwarded-for)], %[src]" '
        "if { req.hdr(x-forwarded-for) -m found }",
        # hop-by-hop headers HAProxy passes on: not the app's business (an upgrade keeps its Connection)
        "    http-request del-header keep-alive",
        "    http-request del-header te",
        "    http-request del-header connection unless { req.hdr(upgrade) -m found }",
        "    http-request set-header X-Forwarded-For %[src] unless { req.hdr(x-forwarded-for) -m found }",
        "    http-request set-header X-Forwarded-Proto https if { ssl_fc }",
        "    http-request set-header X-Forwarded-Proto http unless { ssl_fc }",
        "    http-request set-header X-Forwarded-Host %[req.hdr(host)]",
        "    http-request set-header X-Request-Id %[unique-id] unless { req.hdr(x-request-id) -m found }",
        "    http-request set-var(txn.rid) req.hdr(x-request-id)",
        "    http-request disable-l7-retry unless METH_GET or METH_HEAD or METH_OPTIONS or METH_PUT or METH_DELETE",
        "    use_backend %[var(txn.backend)]",
        "",
    ]


def _framing() -> list[str]:
    """What HTTP/1 framing adds on the wire to HAProxy's count of a request and of its answer (`%U`, `%B`), for the
    access log: the frontend's first rules, and its answers' (`http-response`, then `http-after-response`, which
    its own answers get too).

    HAProxy 2.6 counts a message as it first holds it (HTX): a 20-byte block for the start line, each header's
    name and value, a byte for the end of the headers, the body's data and a byte for the end of a chunked body.
    The wire has instead the start line's two spaces and CRLF, ": " and CRLF per header, the blank line and a
    chunked body's last chunk ("0" CRLF CRLF): 4 bytes a header less 15, less 11 when chunked. An answer goes out
    as the rules left it (`res.hdrs`: its headers as the wire has them), after the "100 Continue" HAProxy sends
    first when the request expects one (25 bytes on the wire, 40 in its count). Exact for messages written as RFC
    9112 has them (one space after a colon, CRLF), but for what HAProxy keeps from no one: each data chunk's size
    line and CRLF, a Connection header's close or keep-alive (dropped as it reads one) and the Connection header
    it writes itself, but its "close" to an HTTP/1.0 client and on an answer of no known length (`closes`).
    HTTP/2 is left at HAProxy's count: it has no HTTP/1 framing.

    Sums are ordered so that no two negative numbers are added: HAProxy 2.6's `add` gives 2^63-1 for those.
    """
    h1 = "{ fc_http_major 1 }"
    continues = "HTTP_1.1 { req.hdr(expect) -i 100-continue }"
    unheld = "!{ var(txn.held_out) -m found }"
    # HAProxy writes "connection: close" (19 bytes with its CRLF) on an answer with none to an HTTP/1.0 client
    # (24 for "keep-alive" if the client asked for it) and on one of no known length, whose end is the connection's
    unsized = "!{ res.hdr(content-length) -m found } !{ res.hdr(transfer-encoding) -m found } !METH_HEAD"
    bodied = "!{ status 101 } !{ status 204 } !{ status 304 }"
    unclosed = "!{ res.hdr(connection) -m found }"
    closes = f"{unclosed} {{ var(txn.http10) -m found }} || {h1} {unclosed} {unsized} {bodied}"
    held = [  # the answer's head as HAProxy first held it, less its start line's text
        f"set-var(txn.fields_out) res.fhdr_cnt,mul(4) if {h1}",
        f"set-var(txn.held_out) res.hdrs,length,sub(txn.fields_out),add(19) if {h1}",
    ]
    return [
        f"    http-request set-var(txn.framing_in) req.fhdr_cnt,mul(4),sub(15) if {h1}",
        f"    http-request set-var(txn.framing_in) var(txn.framing_in),add(4) if {h1} "
        "{ req.hdr(transfer-encoding) -m found }",
        "    http-request set-var(txn.http10) bool(true) if HTTP_1.0",
        f"    http-request set-var(txn.interim_out) int(15) if {continues} {{ req.hdr_val(content-length) gt 0 }} "
        f"|| {continues} {{ req.hdr(transfer-encoding) -m found }}",
        *(f"    http-response {rule}" for rule in held),
        *(f"    http-after-response {rule} {unheld}" for rule in held),
        "    http-after-response set-var(txn.held_out) var(txn.held_out),add(txn.interim_out) "
        "if { var(txn.interim_out) -m found }",
        f"    http-after-response set-var(txn.held_out) var(txn.held_out),sub(4) if {h1} "
        "{ res.hdr(transfer-encoding) -m found }",
        f"    http-after-response set-var(txn.held_out) var(txn.held_out),sub(19) if {h1} {closes}",
        f"    http-after-response set-var(txn.framing_out) res.hdrs,length,add(4),sub(txn.held_out) if {h1}",
    ]


def _redirect(listeners: Listeners, redirects: Path) -> list[str]:
    """An app that asks for it is answered over HTTP with a 308 to the same URL on the HTTPS listener's port."""
    if listeners.https is None:
        return []
    port = "" if listeners.https[1] == 443 else f":{listeners.https[1]}"
    return [
        f"    http-request redirect location https://%[var(txn.host)]{port}%[capture.req.uri] code 308 "
        f"if !{{ ssl_fc }} {{ var(txn.backend),map({redirects}) -m found }}"
    ]


def pages() -> dict[int, bytes]:
    """HAProxy's error files: whole responses that name no tenant and no app."""
    return {status: page(status, close=status in CLOSING, retry_after=RETRY_AFTER.get(status)) for status in PAGES}


def map_lines(entries: Mapping[str, str | int]) -> str:
    return "".join(f"{key} {value}\n" for key, value in sorted(entries.items()))


def _bind(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ms(seconds: float) -> str:
    return f"{int(seconds * 1000)}ms"
