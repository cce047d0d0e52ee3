"""A container's CPU and memory counters, read from its cgroup's files on the engine's machine rather than asked
of the engine: `docker stats` takes ~2 s a container (it waits for a second sample of its own), the files a few
microseconds.

Where the files are depends on the cgroup version (v1: a hierarchy per controller; v2: one unified tree) and on
the engine's cgroup driver (cgroupfs: `docker/<id>`; systemd: `system.slice/docker-<id>.scope`), both of which
the engine reports (`docker info`). The files are read as text, here (`read_files`) or inside a VM node's guest
in one command (`guest_command`), and parsed alike (`Layout.counters`).
"""

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Counters:
    """A running container's counters: CPU time since its cgroup was made (it starts from zero when the
    container starts again), and the memory it holds now less the page cache the kernel may reclaim (what
    `docker stats` shows)."""

    cpu_ns: int
    memory_bytes: int


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

    def files(self, container_id: str) -> tuple[str, str, str]:
        """The CPU, memory and memory.stat files of the container, relative to the cgroup root."""
        group = f"system.slice/docker-{container_id}.scope" if self.driver == "systemd" else f"docker/{container_id}"
        if self.version == 2:
            return f"{group}/cpu.stat", f"{group}/memory.current", f"{group}/memory.stat"
        return f"cpuacct/{group}/cpuacct.usage", f"memory/{group}/memory.usage_in_bytes", f"memory/{group}/memory.stat"

    def counters(self, container_ids: Iterable[str], contents: Mapping[str, str]) -> dict[str, Counters]:
        """The counters of each container all of whose files are in `contents` (path -> text): one that is not
        running has none."""
        found = {}
        for container_id in container_ids:
            texts = [contents.get(path) for path in self.files(container_id)]
            if all(text is not None for text in texts):
                cpu, memory, stat = (text or "" for text in texts)
                found[container_id] = self.parse(cpu, memory, stat)
        return found

    def parse(self, cpu: str, memory: str, stat: str) -> Counters:
        fields = _fields(stat)
        if self.version == 2:
            cpu_ns = _fields(cpu)["usage_usec"] * 1000
            reclaimable = fields.get("inactive_file", 0)
        else:
            cpu_ns = int(cpu)
            reclaimable = fields.get("total_inactive_file", fields.get("inactive_file", 0))
        return Counters(cpu_ns=cpu_ns, memory_bytes=max(0, int(memory) - reclaimable))


def _fields(text: str) -> dict[str, int]:
    """A flat-keyed cgroup file (`key value` lines)."""
    return {key: int(value) for key, value in (line.split() for line in text.splitlines() if line.strip())}


def read_files(root: Path, paths: Iterable[str]) -> dict[str, str]:
    """The text of each file under `root` that exists (a container that stopped has no cgroup any more).
    Blocking: run in a worker thread."""
    contents = {}
    for path in paths:
        try:
            contents[path] = (root / path).read_text()
        except (FileNotFoundError, NotADirectoryError):
            continue
    return contents


def guest_command(paths: Iterable[str], root: Path = CGROUP_ROOT) -> str:
    """One shell command printing each file of `paths` (under `root`) that exists, a line of it per line as
    `path:line` (grep's -H); `parse_dump` reads that back."""
    return f"cd {shlex.quote(str(root))} && grep -sH '' {shlex.join(paths)}; true"


def parse_dump(output: str) -> dict[str, str]:
    """`guest_command`'s output as path -> text."""
    lines: dict[str, list[str]] = {}
    for line in output.splitlines():
        path, _, text = line.partition(":")
        lines.setdefault(path, []).append(text)
    return {path: "\n".join(text) + "\n" for path, text in lines.items()}
