"""Gateway throughput against nginx, in one run, on the same backend.

    .venv/bin/python bench/gateway.py [--runs 3] [--seconds 10]

Backend: nginx (1 worker) serving a 100 B and a 64 KiB file on 127.0.0.1. Measured with wrk, 64 connections:
the backend direct; nginx as a reverse proxy (upstream keep-alive); Strata's gateway (`python -m gateway`).
With 1 worker, wrk and the backend share CPU 0 and the proxy has CPU 1 (as in shared/reference/gateway-lab);
with 2 workers nothing is pinned. Prints medians of req/s and p50/p99 latency, and gateway/nginx ratios.
Every process it starts it stops again, by PID; all traffic stays on 127.0.0.1.
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wrk_report import parse

HOST = "app.bench.localhost"
FILES = {"100 B": ("small.txt", 100), "64 KiB": ("big.bin", 64 * 1024)}
BACKEND, NGINX_PROXY, GATEWAY = 19001, 19080, 19082


def free(port: int) -> None:
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(f"port {port} is in use; stop what listens there first")


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


def wrk(port: int, path: str, seconds: int, cpus: str | None) -> tuple[float, float, float]:
    """req/s, p50 ms, p99 ms of one wrk run."""
    argv = ["wrk", "-t1", "-c64", f"-d{seconds}s", "--latency", "-H", f"Host: {HOST}", f"http://127.0.0.1:{port}{path}"]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    report = parse(out)
    if report.failed:
        raise SystemExit(f"wrk saw errors:\n{out}")
    return report.rate, report.p50_ms, report.p99_ms


def measure(label: str, port: int, args: argparse.Namespace, pinned: bool) -> dict[str, tuple[float, float, float]]:
    results = {}
    for size, (name, _) in FILES.items():
        runs = [wrk(port, f"/{name}", args.seconds, "0" if pinned else None) for _ in range(args.runs)]
        results[size] = (
            statistics.median(r[0] for r in runs),
            statistics.median(r[1] for r in runs),
            statistics.median(r[2] for r in runs),
        )
        rate, p50, p99 = results[size]
        print(f"  {label:<28} {size:>6}: {rate:9.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    for port in (BACKEND, NGINX_PROXY, GATEWAY):
        free(port)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # nginx's workers run as an unprivileged user
        (root / "www").mkdir()
        (root / "tmp").mkdir()
        for name, size in FILES.values():
            (root / "www" / name).write_bytes(os.urandom(size // 2).hex().encode()[:size])
        backend_conf = nginx_conf(
            root,
            "backend",
            1,
            f"""
  sendfile on; tcp_nopush on; open_file_cache max=1000 inactive=60s;
  server {{ listen 127.0.0.1:{BACKEND}; root {root}/www; }}""",
        )
        nginx = ["nginx", "-p", f"{root}/", "-e", f"{root}/startup.log", "-g", "daemon off;"]
        backend = start([*nginx, "-c", str(backend_conf)], "0", root / "backend.out")
        try:
            wait_listening(BACKEND)
            print(f"wrk -t1 -c64 -d{args.seconds}s, {args.runs} runs each, medians", flush=True)
            direct = measure("backend direct", BACKEND, args, pinned=True)
            table: dict[int, dict[str, dict[str, tuple[float, float, float]]]] = {}
            for workers in (1, 2):
                pinned = workers == 1
                proxy_conf = nginx_conf(
                    root,
                    f"proxy{workers}",
                    workers,
                    f"""
  upstream backend {{ server 127.0.0.1:{BACKEND}; keepalive 128; keepalive_requests 1000000; }}
  proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host;
  proxy_buffer_size 16k; proxy_buffers 8 16k;
  server {{ listen 127.0.0.1:{NGINX_PROXY}; location / {{ proxy_pass http://backend; }} }}""",
                )
                table[workers] = {}
                for label, argv, port in (
                    (f"nginx proxy, {workers} worker(s)", [*nginx, "-c", str(proxy_conf)], NGINX_PROXY),
                    (
                        f"strata gateway, {workers} worker(s)",
                        [
                            sys.executable,
                            "-m",
                            "gateway",
                            "--listen",
                            f"127.0.0.1:{GATEWAY}",
                            "--workers",
                            str(workers),
                            "--route",
                            f"bench/app=127.0.0.1:{BACKEND}",
                        ],
                        GATEWAY,
                    ),
                ):
                    process = start(argv, "1" if pinned else None, root / "proxy.out")
                    try:
                        wait_listening(port)
                        time.sleep(0.3)
                        table[workers][label.split(",")[0]] = measure(label, port, args, pinned)
                    finally:
                        stop(process)
        finally:
            stop(backend)

    print("\nratios, strata gateway / nginx proxy (goal: req/s >= 0.9x, p99 <= 1.5x):")
    for workers, rows in table.items():
        for size in FILES:
            ours, theirs = rows["strata gateway"][size], rows["nginx proxy"][size]
            print(
                f"  {workers} worker(s) {size:>6}: req/s {ours[0] / theirs[0]:.2f}x   p99 {ours[2] / theirs[2]:.2f}x"
                f"   (backend direct: {direct[size][0]:.0f} req/s)"
            )


if __name__ == "__main__":
    main()
