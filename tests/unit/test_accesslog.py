"""The access log's FIFO and file: whole lines only, rotation by renaming (HAProxy's non-blocking stdout has no
O_APPEND, so the file is the daemon's alone), a line cut mid-write kept for the next read."""

import json
import os
from pathlib import Path

from gateway.accesslog import AccessLog, dropped_logs, traffic, unparsed, wire_bytes


def test_lines_through_the_fifo_are_appended_whole_and_rotated_by_renaming(tmp_path: Path) -> None:
    log = AccessLog(tmp_path / "access.fifo", tmp_path / "access.log", max_bytes=1000, keep=2)
    log.open()
    try:
        writer = os.open(tmp_path / "access.fifo", os.O_WRONLY | os.O_NONBLOCK)  # as HAProxy holds it
        line = json.dumps({"status": 200, "tenant": "acme", "app": "web", "ms": 3}).encode()
        os.write(writer, line + b"\n" + line[:10])  # the second line is still being written
        first = log.read()
        assert first == line + b"\n"
        os.write(writer, line[10:] + b"\n")
        assert log.read() == line + b"\n"  # completed now, never torn
        for _ in range(4):
            log.append((line + b"\n") * 10)  # ~600 bytes each: past max_bytes at the second and the fourth
        os.close(writer)
    finally:
        log.close()
    files = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("access.log"))
    assert files == ["access.log.1", "access.log.2"]  # the next line starts access.log again
    for name in files:
        data = (tmp_path / name).read_bytes()
        assert b"\0" not in data and all(json.loads(raw) for raw in data.splitlines())
    assert oct((tmp_path / "access.fifo").stat().st_mode & 0o777) == "0o600"


def test_a_full_disk_costs_whole_lines_and_never_a_torn_one(tmp_path: Path) -> None:
    log = AccessLog(tmp_path / "access.fifo", Path("/dev/full"))  # every write: ENOSPC
    log.append(b'{"status": 200}\n' * 3)
    assert log.lost == 3


def test_traffic_is_counted_per_app_status_size_and_latency_from_haproxys_lines() -> None:
    def line(status: int, ms: int, tenant: str, app: str, sent: int = 10) -> bytes:
        return (
            f'{{"time":1.0,"id":"x","client":"127.0.0.1","host":"h","method":"GET","target":"\\/",'
            f'"status":{status},"bytes":{sent},"bytes_in":75,"framing":-3,"framing_in":5,"ms":{ms},'
            f'"tenant":"{tenant}","app":"{app}","tls":"-"}}\n'
        ).encode()

    lines = line(200, 1, "acme", "web") * 3 + line(503, 0, "acme", "web", 99) + line(404, 0, "-", "-")
    assert traffic(lines) == {
        (b"200", b"10", b"75", b"-3", b"5", b"1", b"acme", b"web"): 3,
        (b"503", b"99", b"75", b"-3", b"5", b"0", b"acme", b"web"): 1,
        (b"404", b"10", b"75", b"-3", b"5", b"0", b"-", b"-"): 1,
    }


def test_a_requests_bytes_are_haproxys_count_of_each_message_and_what_http1_framing_adds_to_it() -> None:
    """A GET of 3 headers, 72 bytes on the wire, is 75 in HAProxy's count (its 20-byte start line, no ": " nor
    CRLF); its answer of 2 headers, 101 bytes, is 108 there."""
    assert wire_bytes((b"200", b"108", b"75", b"-7", b"-3", b"1", b"acme", b"web")) == (72, 101)


def test_a_line_logged_before_the_framing_was_is_counted_as_haproxy_held_it() -> None:
    """Lines of the format before an upgrade, still in the FIFO when the new daemon reads it, are metered."""
    old = (
        b'{"time":1.0,"id":"x","client":"127.0.0.1","host":"h","method":"GET","target":"\\/","status":200,'
        b'"bytes":108,"bytes_in":75,"ms":1,"tenant":"acme","app":"web","tls":"-"}\n'
    )
    [request] = traffic(old)
    assert wire_bytes(request) == (75, 108)


def test_lines_that_are_no_requests_are_counted_apart_and_haproxys_dropped_lines_read_from_its_info() -> None:
    """What the usage meter cannot count is counted itself: lines not understood, lines HAProxy dropped."""
    good = (
        b'{"time":1.0,"id":"x","client":"127.0.0.1","host":"h","method":"GET","target":"\\/","status":200,'
        b'"bytes":10,"bytes_in":75,"framing":-7,"framing_in":-3,"ms":1,"tenant":"acme","app":"web","tls":"-"}\n'
    )
    lines = good * 2 + b"not json at all\n" + b'{"status":"cut short\n'

    assert unparsed(lines, traffic(lines)) == 2
    assert unparsed(good, traffic(good)) == 0
    assert dropped_logs("Name: HAProxy\nVersion: 2.6.12\nDroppedLogs: 17\nBusyPolling: 0\n") == 17
    assert dropped_logs("Name: HAProxy\n") is None
