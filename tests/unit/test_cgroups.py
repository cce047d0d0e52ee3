"""Containers' counters read from cgroup files: v1 and v2, the cgroupfs and systemd drivers' layouts, on fixture
trees laid out as the kernel and the engine lay them out; and the one-command dump of a VM node's guest."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hosting.paas.cgroups import Counters, Layout, guest_command, guest_input, parse_dump, read_files

ID = "0123abcd" * 8
V2_STAT = "anon 8388608\nfile 2097152\nactive_file 1048576\ninactive_file 1048576\n"
V1_STAT = "cache 2097152\nrss 8388608\ninactive_file 4096\ntotal_cache 2097152\ntotal_inactive_file 1048576\n"


def tree(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def v2(root: Path, group: str) -> Path:
    return tree(
        root,
        {
            f"{group}/cpu.stat": "usage_usec 10000123\nuser_usec 9000000\nsystem_usec 1000123\n",
            f"{group}/memory.current": "10485760\n",
            f"{group}/memory.stat": V2_STAT,
        },
    )


def v1(root: Path, group: str) -> Path:
    return tree(
        root,
        {
            f"cpuacct/{group}/cpuacct.usage": "10000123456\n",
            f"memory/{group}/memory.usage_in_bytes": "10485760\n",
            f"memory/{group}/memory.stat": V1_STAT,
        },
    )


@pytest.mark.parametrize(
    ("layout", "group"),
    [(Layout(2, "systemd"), f"system.slice/docker-{ID}.scope"), (Layout(2, "cgroupfs"), f"docker/{ID}")],
)
def test_cgroup_v2_counters_are_cpu_stats_usage_and_memory_less_inactive_file(
    tmp_path: Path, layout: Layout, group: str
) -> None:
    root = v2(tmp_path, group)
    contents = read_files(root, layout.files(ID))
    inode = os.stat(root / group).st_ino
    assert layout.counters([ID], contents) == {ID: Counters(10_000_123_000, 9 * 2**20, cgroup=inode)}


@pytest.mark.parametrize(
    ("layout", "group"),
    [(Layout(1, "cgroupfs"), f"docker/{ID}"), (Layout(1, "systemd"), f"system.slice/docker-{ID}.scope")],
)
def test_cgroup_v1_counters_are_cpuacct_usage_and_memory_less_total_inactive_file(
    tmp_path: Path, layout: Layout, group: str
) -> None:
    root = v1(tmp_path, group)
    contents = read_files(root, layout.files(ID))
    inode = os.stat(root / "cpuacct" / group).st_ino
    assert layout.counters([ID], contents) == {ID: Counters(10_000_123_456, 9 * 2**20, cgroup=inode)}


def test_a_cgroup_made_anew_has_another_identity(tmp_path: Path) -> None:
    """A container started again: its cgroup's directory is another, whatever the engine says of its start."""
    layout, group = Layout(1, "cgroupfs"), f"docker/{ID}"
    root = v1(tmp_path, group)
    before = layout.counters([ID], read_files(root, layout.files(ID)))[ID]
    keep = tmp_path / "keep"
    (root / "cpuacct" / group).rename(keep)  # held, so that its inode is not reused at once
    v1(root, group)
    after = layout.counters([ID], read_files(root, layout.files(ID)))[ID]
    shutil.rmtree(keep)
    assert after.cgroup != before.cgroup and after.cpu_ns == before.cpu_ns


def test_a_cgroup_file_that_does_not_parse_costs_only_its_containers_counters(tmp_path: Path) -> None:
    layout, other = Layout(1, "cgroupfs"), "4567cdef" * 8
    root = v1(v1(tmp_path, f"docker/{ID}"), f"docker/{other}")
    (root / f"cpuacct/docker/{other}/cpuacct.usage").write_text("")  # cut short as its cgroup went
    assert layout.counters([ID, other], read_files(root, [*layout.files(ID), *layout.files(other)])).keys() == {ID}


def test_a_container_without_its_cgroup_has_no_counters(tmp_path: Path) -> None:
    layout = Layout(2, "systemd")
    root = v2(tmp_path, f"system.slice/docker-{ID}.scope")
    gone = "f" * 64
    assert layout.counters([ID, gone], read_files(root, [*layout.files(ID), *layout.files(gone)])).keys() == {ID}


def test_the_layout_is_the_engines_own_report() -> None:
    assert Layout.of({"CgroupVersion": "2", "CgroupDriver": "systemd"}) == Layout(2, "systemd")
    assert Layout.of({"CgroupDriver": "cgroupfs"}) == Layout(1, "cgroupfs")  # engines before 20.10 say no version


def test_a_guests_files_come_back_from_one_command_as_they_were(tmp_path: Path) -> None:
    """The guest's command (here run by this host's shell on a fixture tree) prints every file, one command
    for all containers; what it prints parses to what reading the files gives."""
    layout, other = Layout(2, "systemd"), "4567cdef" * 8
    root = v2(v2(tmp_path, f"system.slice/docker-{ID}.scope"), f"system.slice/docker-{other}.scope")
    paths = [*layout.files(ID), *layout.files(other), *layout.files("f" * 64)]
    command = guest_command(root)
    run = subprocess.run(["sh", "-c", command], input=guest_input(paths), capture_output=True, text=True, check=True)
    output = run.stdout
    assert ID not in command  # the paths go on its stdin, however many
    assert parse_dump(output) == read_files(root, paths)
    assert layout.counters([ID, other], parse_dump(output)).keys() == {ID, other}
