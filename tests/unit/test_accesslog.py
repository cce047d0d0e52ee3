"""The access log's FIFO and file: whole lines only, rotation by renaming (HAProxy's non-blocking stdout has no
O_APPEND, so the file is the daemon's alone), a line cut mid-write kept for the next read."""

import json
import os
from pathlib import Path

from gateway.accesslog import AccessLog, parse


def test_lines_through_the_fifo_are_appended_whole_and_rotated_by_renaming(tmp_path: Path) -> None:
    log = AccessLog(tmp_path / "access.fifo", tmp_path / "access.log", max_bytes=1000, keep=2)
    log.open()
    try:
        writer = os.open(tmp_path / "access.fifo", os.O_WRONLY | os.O_NONBLOCK)  # as HAProxy holds it
        line = json.dumps({"status": 200, "tenant": "acme", "app": "web", "ms": 3}).encode()
        os.write(writer, line + b"\n" + line[:10])  # the second line is still being written
        first = log.read()
        assert first == [line]
        os.write(writer, line[10:] + b"\n")
        assert log.read() == [line]  # completed now, never torn
        for _ in range(4):
            log.append([line] * 10)  # ~600 bytes each: past max_bytes at the second and the fourth
        os.close(writer)
    finally:
        log.close()
    files = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("access.log"))
    assert files == ["access.log.1", "access.log.2"]  # the next line starts access.log again
    for name in files:
        data = (tmp_path / name).read_bytes()
        assert b"\0" not in data and all(parse(raw) for raw in data.splitlines())
    assert oct((tmp_path / "access.fifo").stat().st_mode & 0o777) == "0o600"


def test_a_full_disk_costs_whole_lines_and_never_a_torn_one(tmp_path: Path) -> None:
    log = AccessLog(tmp_path / "access.fifo", Path("/dev/full"))  # every write: ENOSPC
    log.append([b'{"status": 200}'] * 3)
    assert log.lost == 3


def test_what_is_not_an_access_line_is_skipped() -> None:
    assert parse(b"Proxy strata stopped (cumulated conns: FE: 0, BE: 0).") is None
    assert parse(b'{"status": 404, "tenant": "-"') is None
    assert parse(b'{"status": 404, "tenant": "-"}') == {"status": 404, "tenant": "-"}
