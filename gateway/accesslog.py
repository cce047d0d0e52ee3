"""The access log: HAProxy writes one JSON line per request to its stdout, a FIFO the daemon reads; the daemon
appends whole lines to `logs/access.log`, rotated by size, and hands them on for the console's traffic.

Why a FIFO and not the file itself: HAProxy makes its stdout non-blocking with a `fcntl` that drops `O_APPEND`,
so a file truncated by a rotation would be written on at HAProxy's old offset (a sparse file that never
shrinks). Through the FIFO the daemon owns the file: rotation is a rename, and a full disk costs whole lines,
never a torn one. The FIFO (made 0600 under HAProxy's directory) outlives the daemon: an adopted HAProxy
writes on into it. While no daemon reads, HAProxy's writes fail and it drops those lines — it never blocks.

The usage meter counts requests and bytes from these lines alone, so a line lost is usage lost: HAProxy counts
the lines it dropped (`show info`'s `DroppedLogs`: `dropped_logs`), and a line that is no request's as
`gateway.config.LOG_FORMAT` makes it is counted too (`unparsed`); the front door logs both and the control API's
`/metrics` shows them (`strata_usage_log_lines_dropped_total`, `..._unparsed_total`).
"""

import contextlib
import fcntl
import logging
import os
import re
import stat
from collections import Counter
from pathlib import Path

log = logging.getLogger(__name__)

MAX_BYTES = 64 * 1024 * 1024
KEEP_FILES = 5
PIPE_BYTES = 1024 * 1024  # Linux's default pipe-max-size: a second of heavy traffic between reads
READ_BYTES = 1024 * 1024


class AccessLog:
    def __init__(self, fifo: Path, path: Path, max_bytes: int = MAX_BYTES, keep: int = KEEP_FILES) -> None:
        self.fifo = fifo
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._read_fd = -1
        self._write_fd = -1
        self._partial = b""
        self.lost = 0  # lines the disk did not take

    def open(self) -> None:
        """Make the FIFO if need be and open both ends: ours to read, and one kept open for writing so that a
        moment without HAProxy reads as "nothing yet", never as the end."""
        with contextlib.suppress(FileExistsError):
            os.mkfifo(self.fifo, 0o600)
        if not stat.S_ISFIFO(os.stat(self.fifo).st_mode):
            raise OSError(f"{self.fifo} is not a FIFO")
        self._read_fd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._write_fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # a smaller pipe only drops lines sooner under a burst
            fcntl.fcntl(self._read_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)

    def writer(self) -> int:
        """A descriptor of the FIFO's writing end, for HAProxy's stdout."""
        return self._write_fd

    @property
    def reader(self) -> int:
        return self._read_fd

    def read(self) -> bytes:
        """Every whole line waiting in the FIFO (a line being written waits for the next read)."""
        chunks = [self._partial]
        while True:
            try:
                chunk = os.read(self._read_fd, READ_BYTES)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        end = data.rfind(b"\n") + 1
        self._partial = data[end:]
        return data[:end]

    def append(self, lines: bytes) -> None:
        """Write whole `lines` to the file, all or none (a full disk cuts the write back), rotating it past
        `max_bytes`. Run in a worker thread."""
        if not lines:
            return
        data = memoryview(lines)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            self._lose(lines.count(b"\n"), exc)
            return
        try:
            start = os.fstat(fd).st_size  # one writer (this daemon): the end stays where it was
            try:
                while data:
                    data = data[os.write(fd, data) :]
            except OSError as exc:
                with contextlib.suppress(OSError):  # cut back what part of the lines went in
                    os.ftruncate(fd, start)
                self._lose(lines.count(b"\n"), exc)
                return
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > self.max_bytes:
            self._rotate()

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            if fd >= 0:
                os.close(fd)
        self._read_fd = self._write_fd = -1

    def _rotate(self) -> None:
        try:
            for index in range(self.keep - 1, 0, -1):
                older = Path(f"{self.path}.{index}")
                if older.exists():
                    older.replace(f"{self.path}.{index + 1}")
            self.path.replace(f"{self.path}.1")
        except OSError as exc:
            log.warning("access log: not rotated: %s", exc)

    def _lose(self, count: int, exc: OSError) -> None:
        self.lost += count
        log.warning("access log: %d lines not written: %s", count, exc)


# The fields of an app's request in `gateway.config.LOG_FORMAT`'s order: found by one scan of a whole batch, in C,
# rather than a JSON parse per line (that was 8 µs a request, on the core HAProxy needs).
_TRAFFIC = re.compile(
    rb'"status":(\d+),"bytes":(\d+),"bytes_in":(\d+),(?:"framing":(-?\d+),"framing_in":(-?\d+),)?"ms":(\d+),'
    rb'"tenant":"([a-z0-9-]+)","app":"([a-z0-9-]+)"'
)  # a line without the framing (logged before an upgrade, waiting in the FIFO) is counted as HAProxy held it

# status, bytes out and in as HAProxy holds the messages, what HTTP/1 framing adds to each on the wire, ms, tenant, app
Request = tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes, bytes]


def traffic(lines: bytes) -> Counter[Request]:
    """How many requests of each (status, bytes out, bytes in, framing out, framing in, ms, tenant, app) `lines`
    hold (unrouted ones have tenant `-`)."""
    return Counter(_TRAFFIC.findall(lines))


def wire_bytes(request: Request) -> tuple[int, int]:
    """The bytes a request of `traffic`'s read from the client and sent to it: HAProxy's count of each message and
    what HTTP/1 framing adds to it (`gateway.config`'s `_framing`)."""
    _, out, read, framing_out, framing_in, *_ = request
    return int(read) + int(framing_in or 0), int(out) + int(framing_out or 0)


def unparsed(lines: bytes, counted: Counter[Request]) -> int:
    """How many of `lines` are not among the requests `traffic` `counted` in them."""
    return max(0, lines.count(b"\n") - counted.total())


def dropped_logs(info: str) -> int | None:
    """The log lines HAProxy could not write since it started, from its `show info` (None if it does not say)."""
    found = re.search(r"^DroppedLogs: (\d+)$", info, re.M)
    return int(found[1]) if found else None
