"""The front door (HAProxy driven by `gateway.FrontDoor`) against nginx, in one run, on the same backend.

    .venv/bin/python bench/gateway.py [--runs 1] [--seconds 5]      # a quick check, about 3 minutes
    .venv/bin/python bench/gateway.py --runs 3 --seconds 10         # the full run, about 13 minutes

Backend: nginx (1 worker) serving a 100 B and a 64 KiB file on 127.0.0.1. In front of it, with 1 and with 2
workers (nginx `worker_processes N`, HAProxy `nbthread N`): nginx as a reverse proxy (upstream keep-alive, the
same X-Forwarded-*/X-Request-Id headers, a JSON access log to a file, TLS like the front door's: TLS 1.2-1.3,
the same ciphers, a session cache and no tickets) and Strata's front door (its JSON access log, read by its
controller as the daemon does). Both terminate TLS with one certificate from `gateway.certs.LocalCA`.

Rows, each measured with wrk -t1 -c64 --latency: plain HTTP keep-alive, HTTPS keep-alive, and new TLS
connections (`wrk -H "Connection: close"` over HTTPS: a TCP connection and a TLS handshake per request; wrk
resumes the TLS session where the server allows it, and both allow it, so these are mostly abbreviated
handshakes — the share is printed). `openssl s_time` cannot send SNI, which the front door requires.
With 1 worker, wrk and the backend share CPU 0 and the proxy has CPU 1 (the front door's controller, a thread of
this process, too); with 2 workers nothing is pinned. Prints medians of req/s and p50/p99, CPU per request of
the proxy's processes (utime+stime from /proc of nginx's master and workers, HAProxy's master and worker), and
the ratios to nginx with the goals; and the CPU of the front door's controller (this process's thread reading the
access log), per request, apart. Then, on the front door with 2 threads: the time from `apply` with a new
endpoint of a served app to the first request answered by it (polled every ms, a new connection each), and
HAProxy's memory with 1,000 apps routed and the time applying them took.

Every process it starts it stops again, by PID; all traffic stays on 127.0.0.1.
"""

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wrk_report import parse

del sys.path[0]  # bench/, where this file, gateway.py, would stand for the `gateway` package
from gateway import FrontDoor, Listeners, RouteSpec, runtime  # noqa: E402
from gateway.certs import LocalCA  # noqa: E402
from gateway.config import CIPHERS, CIPHERSUITES  # noqa: E402
from gateway.frontdoor import LOG_READ_SECONDS  # noqa: E402

HOST = "app.bench.localhost"  # the app's own hostname, sent as Host over plain HTTP
TLS_HOST = "localhost"  # `app.bench.localhost` does not resolve here: HTTPS goes to `localhost`, an extra hostname
FILES = {"100 B": ("small.txt", 100), "64 KiB": ("big.bin", 64 * 1024)}
ROWS = [("http", "100 B"), ("http", "64 KiB"), ("https", "100 B"), ("https", "64 KiB"), ("new TLS", "100 B")]
BACKEND, NGINX_HTTP, NGINX_HTTPS, GATEWAY_HTTP, GATEWAY_HTTPS, GATEWAY_ADMIN = 19001, 19080, 19443, 19082, 19444, 19083
NEW_BACKENDS = range(19101, 19121)  # one new instance per try of the time-to-first-request, each answering `new N`
UNLIMITED = 1 << 30
APPS = 1000
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Result:
    rate: float
    p50: float
    p99: float
    cpu_us: float  # the proxy's CPU per request (µs)
    controller_us: float  # the front door's controller (this process's other threads) per request (µs)
    resumed: float  # of the TLS handshakes of new connections, the share that resumed a session


# processes


def free(port: int) -> None:
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(f"port {port} is in use; stop what listens there first")


def start(argv: list[str], cpus: str | None, log: Path) -> subprocess.Popen[bytes]:
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    return subprocess.Popen(argv, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)  # noqa: SIM115


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the session started for this PID: its workers
        process.wait()


def wait_listening(port: int) -> None:
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def family(pid: int) -> list[int]:
    """`pid` and its children (nginx's master and workers, HAProxy's master and workers)."""
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(int(entry.name))[1]) == pid:
                    pids.append(int(entry.name))
            except (OSError, ValueError):
                pass
    return pids


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command's name: [0] is the state (field 3)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = _stat(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return total / 1024


# wrk


def wrk(url: str, seconds: int, cpus: str | None, *, close: bool = False) -> Any:
    headers = ["-H", f"Host: {HOST}"] if url.startswith("http:") else []
    if close:
        headers += ["-H", "Connection: close"]
    argv = ["wrk", "-t1", "-c64", f"-d{seconds}s", "--latency", *headers, url]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    report = parse(out)
    if report.failed:
        raise SystemExit(f"wrk saw errors on {url}:\n{out}")
    return report


def url(kind: str, size: str, http_port: int, https_port: int) -> str:
    path = "/" + FILES[size][0]
    return f"http://127.0.0.1:{http_port}{path}" if kind == "http" else f"https://{TLS_HOST}:{https_port}{path}"


def measure(
    label: str,
    ports: tuple[int, int],
    pids: Callable[[], list[int]],
    args: argparse.Namespace,
    pinned: bool,
    handshakes: Callable[[], Callable[[], tuple[int, int]]] | None = None,
    rows: list[tuple[str, str]] = ROWS,
) -> dict[tuple[str, str], Result]:
    """Each row's medians over the runs. `handshakes()` starts counting TLS handshakes; what it returns ends it,
    returning how many resumed a session and how many there were."""
    results = {}
    for kind, size in rows:
        runs = []
        for _ in range(args.runs):
            processes = pids()
            count = handshakes() if handshakes else lambda: (0, 0)
            cpu, controller = cpu_seconds(processes), _own_cpu()
            report = wrk(url(kind, size, *ports), args.seconds, "0" if pinned else None, close=kind == "new TLS")
            time.sleep(LOG_READ_SECONDS + 0.5)  # the controller reads the run's last lines: they count for this run
            cpu, controller = cpu_seconds(processes) - cpu, _own_cpu() - controller
            resumed, total = count()
            per_request = 1e6 / report.requests
            runs.append(Result(report.rate, report.p50_ms, report.p99_ms, cpu * per_request,
                               controller * per_request, resumed / total if total else 0.0))  # fmt: skip
        result = Result(*(statistics.median(getattr(r, f) for r in runs) for f in Result.__dataclass_fields__))
        results[kind, size] = result
        print(
            f"  {label:<20} {kind:>7} {size:>6}: {result.rate:7.0f} req/s  p50 {result.p50:5.2f} ms"
            f"  p99 {result.p99:5.2f} ms  cpu {result.cpu_us:5.1f} us/req"
            + (f" +{result.controller_us:4.1f} controller" if label.startswith("strata") else "")
            + (f"  {result.resumed:.0%} resumed" if kind == "new TLS" else ""),
            flush=True,
        )
    return results


def _own_cpu() -> float:
    """This process's CPU: during a wrk run, its main thread waits, so this is the front door's controller."""
    times = os.times()
    return times.user + times.system


# nginx


def nginx_conf(root: Path, name: str, workers: int, body: str) -> Path:
    conf = root / f"{name}.conf"
    conf.write_text(f"""
worker_processes {workers};
pid {root}/{name}.pid;
error_log {root}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off; tcp_nodelay on; keepalive_requests 1000000; keepalive_timeout 65;
  default_type application/octet-stream;
  client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
  uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
  {body}
}}""")
    return conf


def proxy_body(root: Path, workers: int, pem: Path) -> str:
    """nginx doing the front door's job: the same headers, a JSON access log, TLS as configured by it."""
    return f"""
  log_format strata escape=json '{{"time":$msec,"id":"$request_id","client":"$remote_addr","host":"$host",'
    '"method":"$request_method","target":"$request_uri","status":$status,"bytes":$bytes_sent,'
    '"ms":$request_time,"tls":"$ssl_protocol","reused":"$ssl_session_reused",'
    '"connection_requests":$connection_requests}}';
  upstream backend {{ server 127.0.0.1:{BACKEND}; keepalive 128; keepalive_requests 1000000; }}
  proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host;
  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto $scheme;
  proxy_set_header X-Forwarded-Host $http_host; proxy_set_header X-Request-Id $request_id;
  proxy_buffer_size 16k; proxy_buffers 8 16k;
  ssl_certificate {pem}; ssl_certificate_key {pem};
  ssl_protocols TLSv1.2 TLSv1.3; ssl_ciphers {CIPHERS}; ssl_conf_command Ciphersuites {CIPHERSUITES};
  ssl_prefer_server_ciphers on; ssl_session_cache shared:SSL:10m; ssl_session_tickets off;
  server {{
    listen 127.0.0.1:{NGINX_HTTP}; listen 127.0.0.1:{NGINX_HTTPS} ssl http2;
    access_log {root}/nginx{workers}.access.log strata;  # here: `access_log off` above cancels its level's
    location / {{ proxy_pass http://backend; }}
  }}"""


def nginx_handshakes(log: Path) -> Callable[[], tuple[int, int]]:
    """Count, in the access log from now on, the first requests of TLS connections and those that resumed."""
    offset = log.stat().st_size

    def count() -> tuple[int, int]:
        resumed = total = 0
        with open(log, "rb") as lines:
            lines.seek(offset)
            for line in lines:
                if b'"tls":"TLS' in line and b'"connection_requests":1}' in line:
                    total += 1
                    resumed += b'"reused":"r"' in line
        return resumed, total

    return count


# the front door, on an event loop thread


class Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def route(app: str, *endpoints: str, hostnames: tuple[str, ...] = ()) -> RouteSpec:
    return RouteSpec("bench", app, hostnames, endpoints, UNLIMITED, UNLIMITED, 64 << 20)


APP = route("app", f"127.0.0.1:{BACKEND}", hostnames=(TLS_HOST,))


async def applied(front: FrontDoor, routes: list[RouteSpec]) -> float:
    """Apply and wait until HAProxy serves them; the seconds it took."""
    began = time.perf_counter()
    front.apply(routes)
    await front.settled()
    return time.perf_counter() - began


async def install_certificate(front: FrontDoor, pem: bytes) -> None:
    """The certificate served on HTTPS as the platform serves one: a combined PEM, through the front door."""
    path = front.files.root / f"{TLS_HOST}.pem"
    path.write_bytes(pem)
    path.chmod(0o600)
    await front.serve_certificate(path)


def front_handshakes(loop: Loop, front: FrontDoor) -> Callable[[], tuple[int, int]]:
    """Count TLS handshakes, and those that resumed a session (found in HAProxy's cache), from now on."""

    def counters() -> tuple[int, int]:
        info = loop.run(runtime.command(front.files.runtime_socket, "show info"))
        fields = dict(line.split(": ", 1) for line in info.splitlines() if ": " in line)
        return int(fields["SslCacheLookups"]) - int(fields["SslCacheMisses"]), int(fields["CumSslConns"])

    before = counters()
    return lambda: tuple(after - then for after, then in zip(counters(), before, strict=True))  # type: ignore[return-value]


async def without_old_workers(front: FrontDoor) -> None:
    """Wait (up to 10 s) until the workers of earlier configurations have finished."""
    for _ in range(100):
        if not await front.haproxy.old_workers():
            return
        await asyncio.sleep(0.1)


def haproxy_pids(front: FrontDoor) -> list[int]:
    master = front.haproxy.pid()
    return family(master) if master is not None else []


def get(port: int, path: str) -> bytes:
    """One request on a new connection: the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while piece := sock.recv(65536):
            chunks.append(piece)
    return b"".join(chunks).partition(b"\r\n\r\n")[2]


def first_request(loop: Loop, front: FrontDoor) -> list[float]:
    """For each new instance: from `apply` with it (the moment it became ready) to the first answer from it."""
    times = []
    for port in NEW_BACKENDS:
        endpoint, expected = f"127.0.0.1:{port}", f"new {port}\n".encode()
        routes = [route("app", f"127.0.0.1:{BACKEND}", endpoint, hostnames=(TLS_HOST,))]
        began = time.perf_counter()
        loop.loop.call_soon_threadsafe(front.apply, routes)
        while get(GATEWAY_HTTP, "/small.txt") != expected:
            if time.perf_counter() - began > 10:
                raise SystemExit(f"{endpoint} got no request within 10 s")
            time.sleep(max(0.0, 0.001 - (time.perf_counter() - began) % 0.001))
        times.append(time.perf_counter() - began)
        loop.run(front.settled())  # the next apply replaces it: it goes into maintenance
    return times


# the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    for port in (BACKEND, NGINX_HTTP, NGINX_HTTPS, GATEWAY_HTTP, GATEWAY_HTTPS, GATEWAY_ADMIN, *NEW_BACKENDS):
        free(port)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # nginx's workers run as an unprivileged user
        (root / "www").mkdir()
        (root / "tmp").mkdir()
        for name, size in FILES.values():
            (root / "www" / name).write_bytes(os.urandom(size // 2).hex().encode()[:size])
        certificate = LocalCA(root / "ca").issue([TLS_HOST, HOST])
        pem = root / "nginx.pem"  # nginx's master reads it as this user
        pem.write_bytes(certificate.combined_pem())
        new_servers = "".join(
            f'  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "new {port}\\n"; }} }}\n'
            for port in NEW_BACKENDS
        )
        backend_conf = nginx_conf(
            root,
            "backend",
            1,
            f"""
  sendfile on; tcp_nopush on; open_file_cache max=1000 inactive=60s;
  server {{ listen 127.0.0.1:{BACKEND}; root {root}/www; }}
{new_servers}""",
        )
        nginx = ["nginx", "-p", f"{root}/", "-e", f"{root}/startup.log", "-g", "daemon off;"]
        backend = start([*nginx, "-c", str(backend_conf)], "0", root / "backend.out")
        table: dict[int, dict[str, dict[tuple[str, str], Result]]] = {}
        extra: dict[str, Any] = {}
        try:
            wait_listening(BACKEND)
            print(f"wrk -t1 -c64 -d{args.seconds}s, {args.runs} run(s) each, medians", flush=True)
            direct = measure("backend direct", (BACKEND, 0), lambda: family(backend.pid), args, True, rows=ROWS[:2])
            for workers in (1, 2):
                table[workers] = {"nginx": bench_nginx(root, nginx, workers, pem, args)}
                table[workers]["strata"] = bench_front(root, workers, certificate.combined_pem(), args, extra)
        finally:
            stop(backend)

    report(table, direct, extra)


def bench_nginx(
    root: Path, nginx: list[str], workers: int, pem: Path, args: argparse.Namespace
) -> dict[tuple[str, str], Result]:
    pinned = workers == 1
    conf = nginx_conf(root, f"proxy{workers}", workers, proxy_body(root, workers, pem))
    proxy = start([*nginx, "-c", str(conf)], "1" if pinned else None, root / "proxy.out")
    try:
        wait_listening(NGINX_HTTP)
        time.sleep(0.3)
        ports = (NGINX_HTTP, NGINX_HTTPS)
        log = root / f"nginx{workers}.access.log"
        processes = lambda: family(proxy.pid)  # noqa: E731
        results = measure(f"nginx, {workers} worker(s)", ports, processes, args, pinned, lambda: nginx_handshakes(log))
    finally:
        stop(proxy)
    return results


def bench_front(
    root: Path, workers: int, pem: bytes, args: argparse.Namespace, extra: dict[str, Any]
) -> dict[tuple[str, str], Result]:
    pinned = workers == 1
    all_cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1} if pinned else all_cpus)  # the loop's thread, and the HAProxy it starts, inherit it
    loop = Loop()
    os.sched_setaffinity(0, all_cpus)
    listeners = Listeners(("127.0.0.1", GATEWAY_HTTP), ("127.0.0.1", GATEWAY_HTTPS), ("127.0.0.1", GATEWAY_ADMIN))
    front = FrontDoor(
        root / f"front{workers}",
        "localhost",
        listeners,
        access_log=root / f"front{workers}.access.log",
        threads=workers,
    )
    try:
        loop.run(front.start())
        loop.run(applied(front, [APP]))
        loop.run(install_certificate(front, pem))
        time.sleep(0.3)
        ports = (GATEWAY_HTTP, GATEWAY_HTTPS)
        label = f"strata, {workers} thread(s)"
        processes = lambda: haproxy_pids(front)  # noqa: E731
        results = measure(label, ports, processes, args, pinned, lambda: front_handshakes(loop, front))
        if workers == 2:
            loop.run(without_old_workers(front))
            extra["rss_1"] = rss_mib(haproxy_pids(front))
            extra["first"] = first_request(loop, front)
            many = [APP, *(route(f"app{i}", f"127.0.0.1:{BACKEND}") for i in range(1, APPS))]
            extra["apply"] = loop.run(applied(front, many))
            loop.run(without_old_workers(front))  # the worker before the reload ends once its connections have
            extra["rss_many"] = rss_mib(haproxy_pids(front))
            if get(GATEWAY_HTTP, "/small.txt") != (root / "www" / "small.txt").read_bytes():
                raise SystemExit("with 1,000 apps, the bench's app is not served")
    finally:
        loop.run(front.close(stop_haproxy=True))
        loop.close()
    return results


def report(
    table: dict[int, dict[str, dict[tuple[str, str], Result]]],
    direct: dict[tuple[str, str], Result],
    extra: dict[str, Any],
) -> None:
    print("\nstrata / nginx (goals: req/s >= 0.95x, p99 <= 1.2x, cpu/req <= 1.1x, HAProxy's processes):")
    for workers, rows in table.items():
        for kind, size in ROWS:
            ours, theirs = rows["strata"][kind, size], rows["nginx"][kind, size]
            rate, p99, cpu = ours.rate / theirs.rate, ours.p99 / theirs.p99, ours.cpu_us / theirs.cpu_us
            with_controller = (ours.cpu_us + ours.controller_us) / theirs.cpu_us
            misses = [n for n, bad in (("req/s", rate < 0.95), ("p99", p99 > 1.2), ("cpu", cpu > 1.1)) if bad]
            verdict = "missed: " + ", ".join(misses) if misses else "met"
            print(
                f"  {workers} worker(s) {kind:>7} {size:>6}: req/s {rate:.2f}x  p99 {p99:.2f}x  cpu {cpu:.2f}x"
                f" ({with_controller:.2f}x with the controller)  {verdict}"
            )
    print("  backend direct: " + ", ".join(f"{size} {direct['http', size].rate:.0f} req/s" for size in FILES))
    if extra:
        first = sorted(extra["first"])
        print(
            f"\nnew instance to its first request ({len(first)} tries, a new connection per ms):"
            f" median {statistics.median(first) * 1000:.1f} ms, min {first[0] * 1000:.1f}, max {first[-1] * 1000:.1f}"
        )
        print(
            f"HAProxy RSS (master + worker): {extra['rss_1']:.1f} MiB with 1 app, {extra['rss_many']:.1f} MiB with"
            f" {APPS} apps; applying {APPS} apps took {extra['apply']:.2f} s (one reload)"
        )


if __name__ == "__main__":
    main()
