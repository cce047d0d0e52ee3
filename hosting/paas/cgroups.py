"""A container's CPU and memory counters, read from its cgroup's files on the engine's machine rather than asked
of the engine: `docker stats` takes ~2 s a container (it waits for a second sample of its own), the files a few
microseconds.

Where the files are depends on the cgroup version (v1: a hierarchy per controller; v2: one unified tree) and on
the engine's cgroup driver (cgroupfs: `docker/<id>`; systemd: `system.slice/docker-<id>.scope`), both of which
the engine reports (`docker info`). The files are read as text, here (`read_files`) or inside a VM node's guest
in one command (`guest_command`), and parsed alike (`Layout.counters`).

Each reading carries the cgroup's identity, the inode of its directory (stat'ed after its files were read): a
container started again, or removed and made anew, has a new cgroup and so a new identity, whatever the engine's
cached start time says. The inode is on cgroup v1 and v2 alike (v2's `cgroup.id` has no file on v1).
"""

import logging
import os
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Counters:
    """A running container's counters: CPU time since its cgroup was made (it starts from zero when the
    container starts again), and the memory it holds now less the page cache the kernel may reclaim (what
    `docker stats` shows)."""

    cpu_ns: int
    memory_bytes: int
    cgroup: int = 0  # the identity of the cgroup read (its directory's inode): another is another incarnation


@dataclass(frozen=True)
class Layout:
    """Where an engine keeps its containers' cgroups: cgroup `version` 1 or 2, made by `driver` cgroupfs or
    systemd."""

    version: int = 1
    driver: str = "cgroupfs"

    @classmethod
    def of(cls, info: Mapping[str, Any]) -> "Layout":
        """The layout of the engine whose `docker info` is `info`."""
        return cls(int(info.get("CgroupVersion") or 1), str(info.get("CgroupDriver") or "cgroupfs"))

    def files(self, container_id: str) -> tuple[str, str, str, str]:
        """The CPU, memory and memory.stat files of the container, relative to the cgroup root, and last its CPU
        cgroup's directory (with a trailing `/`: its "text" is its inode, the cgroup's identity)."""
        group = f"system.slice/docker-{container_id}.scope" if self.driver == "systemd" else f"docker/{container_id}"
        if self.version == 2:
            return f"{group}/cpu.stat", f"{group}/memory.current", f"{group}/memory.stat", f"{group}/"
        cpu = f"cpuacct/{group}"
        return f"{cpu}/cpuacct.usage", f"memory/{group}/memory.usage_in_bytes", f"memory/{group}/memory.stat", f"{cpu}/"

    def counters(self, container_ids: Iterable[str], contents: Mapping[str, str]) -> dict[str, Counters]:
        """The counters of each container all of whose files are in `contents` (path -> text): one that is not
        running has none, nor has one whose files do not parse (a file cut short as its cgroup went: logged)."""
        found = {}
        for container_id in container_ids:
            texts = [contents.get(path) for path in self.files(container_id)]
            if all(text is not None for text in texts):
                cpu, memory, stat, identity = (text or "" for text in texts)
                try:
                    found[container_id] = self.parse(cpu, memory, stat, identity)
                except (ValueError, KeyError) as exc:
                    log.warning("usage: the cgroup files of container %s do not parse: %r", container_id[:12], exc)
        return found

    def parse(self, cpu: str, memory: str, stat: str, identity: str = "0") -> Counters:
        fields = _fields(stat)
        if self.version == 2:
            cpu_ns = _fields(cpu)["usage_usec"] * 1000
            reclaimable = fields.get("inactive_file", 0)
        else:
            cpu_ns = int(cpu)
            reclaimable = fields.get("total_inactive_file", fields.get("inactive_file", 0))
        return Counters(cpu_ns=cpu_ns, memory_bytes=max(0, int(memory) - reclaimable), cgroup=int(identity))


def _fields(text: str) -> dict[str, int]:
    """A flat-keyed cgroup file (`key value` lines)."""
    return {key: int(value) for key, value in (line.split() for line in text.splitlines() if line.strip())}


def read_files(root: Path, paths: Iterable[str]) -> dict[str, str]:
    """The text of each file under `root` that exists (a container that stopped has no cgroup any more), and
    of each directory (a path ending in `/`) its inode, stat'ed after the files. Blocking: run in a worker
    thread."""
    contents, paths = {}, sorted(paths, key=lambda path: path.endswith("/"))
    for path in paths:
        try:
            if path.endswith("/"):
                contents[path] = f"{os.stat(root / path).st_ino}\n"
            else:
                contents[path] = (root / path).read_text()
        except (FileNotFoundError, NotADirectoryError):
            continue
    return contents


def guest_command(root: Path = CGROUP_ROOT) -> str:
    """One shell command reading the paths on its stdin (one a line, under `root`), printing each file that
    exists a line of it per line as `path:line` (grep's -H), then each directory (ending in `/`) as
    `path:inode`; `parse_dump` reads that back. The paths go on stdin, not in its argv: a node's hundreds of
    containers make a command line longer than a shell or SSH server may take."""
    return (
        f"cd {shlex.quote(str(root))} && paths=$(cat) && "
        """{ printf '%s\\n' "$paths" | grep -v '/$' | xargs -r grep -sH ''; """
        """printf '%s\\n' "$paths" | grep '/$' | xargs -r stat -c '%n:%i' 2>/dev/null; }; true"""
    )


def guest_input(paths: Iterable[str]) -> str:
    """`guest_command`'s stdin."""
    return "".join(f"{path}\n" for path in paths)


def parse_dump(output: str) -> dict[str, str]:
    """`guest_command`'s output as path -> text."""
    lines: dict[str, list[str]] = {}
    for line in output.splitlines():
        path, _, text = line.partition(":")
        lines.setdefault(path, []).append(text)
    return {path: "\n".join(text) + "\n" for path, text in lines.items()}
