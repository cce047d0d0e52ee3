"""The access log HAProxy writes (one JSON line per request, on its stdout, opened O_APPEND on the file):
read as it grows for the console's traffic, and rotated by size.

Rotation copies the file aside and truncates it (logrotate's `copytruncate`): HAProxy keeps its descriptor and,
appending, writes at the new end. Lines written between the copy and the truncation are lost — a few lines once
per rotation, never a torn one in the copies.
"""

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

MAX_BYTES = 64 * 1024 * 1024
KEEP_FILES = 5


class AccessLogReader:
    """Reads the lines added since the last read; starts at the file's end (old lines were counted before)."""

    def __init__(self, path: "os.PathLike[str] | str", max_bytes: int = MAX_BYTES, keep: int = KEEP_FILES) -> None:
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.keep = keep
        try:
            self.offset = os.path.getsize(self.path)
        except FileNotFoundError:
            self.offset = 0

    def read(self) -> Iterator[dict[str, Any]]:
        """Each whole new line, parsed; a line that is not JSON (HAProxy's notice of its own stop) is skipped."""
        try:
            with open(self.path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                if size < self.offset:  # truncated by someone else: start over
                    self.offset = 0
                file.seek(self.offset)
                data = file.read(size - self.offset)
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # a line being written stays for the next read
        self.offset += end
        for line in data[:end].splitlines():
            if line.startswith(b"{"):
                with contextlib.suppress(ValueError):
                    yield json.loads(line)

    def rotate_if_full(self) -> bool:
        """Past `max_bytes`, shift `.1`… `.N` and copy the file to `.1`, then truncate it. Call after `read`."""
        try:
            if os.path.getsize(self.path) <= self.max_bytes:
                return False
            for index in range(self.keep - 1, 0, -1):
                older = f"{self.path}.{index}"
                if os.path.exists(older):
                    os.replace(older, f"{self.path}.{index + 1}")
            shutil.copyfile(self.path, f"{self.path}.1")
            os.truncate(self.path, 0)
        except OSError as exc:  # a full disk costs the rotation, never the front door
            log.warning("access log: not rotated: %s", exc)
            return False
        self.offset = 0
        return True
