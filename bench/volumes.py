"""Volumes: write throughput on a Strata volume against a plain Docker volume, and the time to create one.

    .venv/bin/python bench/volumes.py [--runs 7] [--creates 5] [--seq-mib 1024] [--random-writes 65536]
                                      [--sync-writes 8000]

A daemon in a temporary STRATA_HOME (local node), a tenant on the large plan. First `--creates` volumes of
`--create-mib` (1 GiB) are created one after the other through the API and timed (goal ≤ 5 s each), then deleted.
Then an app of strata/static (busybox) is deployed with a volume at /data, and a container of the same image is
started with the same limits, user and security options (read from the app's container) and a plain
`docker volume create` volume at /data: the platform's container writes through the bind mount of the volume's
loop-mounted ext4 (the path every app uses), the baseline's straight to the host's filesystem. Per run, both
sides alternately first, each workload inside the container (`docker exec`):

- sequential: `time dd if=/dev/zero of=/data/seq bs=1M count=SEQ conv=fsync` (busybox's time of dd, fsync
  included, in 10 ms steps);
- random, fsync at the end: WRITES 4 KiB `pwrite`s at random block offsets into a file of `--random-file-mib`
  written beforehand, then one fsync; the same offsets on both sides (a fixed seed);
- random, O_DSYNC: `--sync-writes` such writes, each durable before the next (fdatasync's semantics: a
  database's commit, PostgreSQL's default);
- random, fsync after each: as many writes, each followed by a full fsync (the inode's times too: a journal
  commit on ext4 whenever they changed).

busybox has no fio and its `dd` writes at one offset per process, so the random writer is a 40-line C program
compiled here (`gcc -static`) and put on each volume; without gcc (or with `--random-tool sh`) a shell loop of
one `dd` per write stands in (no O_DSYNC run), timed from outside, where process start-up dominates both sides
alike. It also says whether the host's filesystem under the plain volume has a journal: without one, the
baseline's fsyncs commit nothing, the volume's own ext4 still does.

Medians of the runs, each with its baseline and the ratio strata/plain (goal ≥ 0.9x). Needs a Docker engine and
root (volumes are loop mounts); a few minutes. Everything it makes it removes again: the app and volumes through
the API (which unmounts them), the baseline's container and volume, the daemon (SIGINT), and any mount left
under its temporary home (checked in /proc/mounts). It finishes well inside the backup schedule's first look
(10 minutes after the daemon starts), so no scheduled backup pauses the app mid-measure.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import strata_daemon

from tenants.client import ApiError, StrataClient
from tenants.schemas import AppSpec, TenantCreate, VolumeCreate, VolumeMount

TENANT = "bench"
PLAN = "large"  # 100 GiB of storage: the created volumes and the measured one fit
APP = "io"
VOLUME = "io"
MOUNT = "/data"
TIMEOUT_SECONDS = 300  # for any one step
CREATE_GOAL_SECONDS = 5.0
RATIO_GOAL = 0.9
BLOCK = 4096
SEED = 20261206

RANDWRITE_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t state;
static uint64_t next(void) { /* splitmix64: the same offsets for the same seed */
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int main(int argc, char **argv) { /* 4 KiB pwrites at random blocks (O_DSYNC, or each fsynced), then fsync */
    if (argc != 5) { fprintf(stderr, "usage: randwrite FILE WRITES end|dsync|fsync SEED\n"); return 2; }
    long writes = atol(argv[2]);
    int dsync = strcmp(argv[3], "dsync") == 0, each = strcmp(argv[3], "fsync") == 0;
    state = strtoull(argv[4], NULL, 10);
    int fd = open(argv[1], O_WRONLY | (dsync ? O_DSYNC : 0));
    if (fd < 0) { perror("open"); return 1; }
    off_t blocks = lseek(fd, 0, SEEK_END) / 4096;
    if (blocks <= 0) { fprintf(stderr, "%s is empty\n", argv[1]); return 1; }
    static uint64_t block[512];
    for (int i = 0; i < 512; i++) block[i] = next();
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < writes; i++) {
        block[0] = (uint64_t)i;
        if (pwrite(fd, block, 4096, (off_t)(next() % (uint64_t)blocks) * 4096) != 4096) { perror("pwrite"); return 1; }
        if (each && fsync(fd) != 0) { perror("fsync"); return 1; }
    }
    if (fsync(fd) != 0) { perror("fsync"); return 1; }
    clock_gettime(CLOCK_MONOTONIC, &end);
    printf("%ld %.6f\n", writes, (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9);
    return close(fd) != 0;
}
"""

# The stand-in without a compiler: one dd per write (ash's $RANDOM is 15 bits: two make the offset).
SH_RANDWRITE = (
    "blocks=$(( $(stat -c %s {file}) / 4096 )); i=0; while [ $i -lt {writes} ]; do "
    "dd if=/dev/zero of={file} bs=4096 count=1 seek=$(( (RANDOM * 32768 + RANDOM) % blocks )) conv=notrunc{sync} "
    "2>/dev/null || exit 1; i=$((i + 1)); done; dd if=/dev/null of={file} conv=notrunc,fsync 2>/dev/null"
)


def run(*command: str, timeout: float = TIMEOUT_SECONDS) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return done.stdout


@dataclass(frozen=True)
class Side:
    label: str
    container: str
    host_dir: Path  # what the container sees at /data


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    unit: str


WORKLOADS = (
    Workload("seq", "sequential write, dd bs=1M conv=fsync", "MiB/s"),
    Workload("end", "random 4 KiB writes, fsync at the end", "writes/s"),
    Workload("dsync", "random 4 KiB writes, O_DSYNC each", "writes/s"),
    Workload("fsync", "random 4 KiB writes, fsync after each", "writes/s"),
)


class Bench:
    def __init__(self, args: argparse.Namespace, tool: str) -> None:
        self.args, self.tool = args, tool

    def exec(self, side: Side, script: str) -> str:
        return run("docker", "exec", side.container, "/bin/sh", "-c", script)

    def prepare(self, side: Side) -> None:
        """The random writes' file, written in full (no unwritten extents, no holes) and on the disk."""
        self.exec(
            side, f"dd if=/dev/zero of={MOUNT}/rand bs=1M count={self.args.random_file_mib} conv=fsync 2>/dev/null"
        )

    def measure(self, side: Side, workload: Workload) -> float:
        if workload.key == "seq":
            # This busybox's dd prints no time: its `time` applet does (real, in 10 ms steps).
            out = self.exec(
                side,
                f"rm -f {MOUNT}/seq; time dd if=/dev/zero of={MOUNT}/seq bs=1M count={self.args.seq_mib} conv=fsync"
                f" 2>&1; rm -f {MOUNT}/seq",
            )
            found = re.search(r"real\s+(\d+)m\s*([\d.]+)s", out)
            if found is None or f"{self.args.seq_mib}+0 records out" not in out:
                raise RuntimeError(f"dd said: {out.strip()}")
            return self.args.seq_mib / (int(found.group(1)) * 60 + max(float(found.group(2)), 0.01))
        writes = self.args.random_writes if workload.key == "end" else self.args.sync_writes
        if self.tool == "c":
            out = self.exec(side, f"{MOUNT}/randwrite {MOUNT}/rand {writes} {workload.key} {SEED}")
            count, seconds = out.split()
            return int(count) / float(seconds)
        script = SH_RANDWRITE.format(
            file=f"{MOUNT}/rand", writes=writes, sync=",fsync" if workload.key == "fsync" else ""
        )
        started = time.perf_counter()
        self.exec(side, script)
        return writes / (time.perf_counter() - started)


def compile_randwrite(scratch: Path) -> Path | None:
    if shutil.which("gcc") is None:
        return None
    source, binary = scratch / "randwrite.c", scratch / "randwrite"
    source.write_text(RANDWRITE_C)
    try:
        run("gcc", "-O2", "-static", "-o", str(binary), str(source))
    except RuntimeError as exc:
        print(f"(no static randwrite: {exc}; a shell loop of dd stands in)", file=sys.stderr)
        return None
    return binary


def time_creates(client: StrataClient, count: int, size_mib: int) -> tuple[list[float], list[float]]:
    """Seconds each create and each delete took through the API."""
    names = [f"create{number}" for number in range(count)]
    creates, deletes = [], []
    try:
        for name in names:
            started = time.perf_counter()
            client.create_volume(TENANT, VolumeCreate(name=name, size_mib=size_mib))
            creates.append(time.perf_counter() - started)
    finally:
        for name in names[: len(creates) + 1]:
            started = time.perf_counter()
            try:
                client.delete_volume(TENANT, name)
            except ApiError:
                continue  # the create that failed left nothing
            deletes.append(time.perf_counter() - started)
    return creates, deletes


def app_container(client: StrataClient) -> str:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        ready = [i for i in client.instances(TENANT, APP) if i.state == "ready"]
        if ready:
            return ready[0].container_id
        if time.monotonic() > deadline:
            raise SystemExit(f"{TENANT}/{APP} did not get a ready instance")
        time.sleep(0.2)


def baseline_container(app: str, volume: str, name: str) -> str:
    """A container of the app's image with the app container's user, limits and security options, and the plain
    Docker volume at /data."""
    inspected = json.loads(run("docker", "inspect", app))[0]
    config, host = inspected["Config"], inspected["HostConfig"]
    options = [
        f"--memory={host['Memory']}",
        f"--memory-swap={host['MemorySwap']}",
        f"--cpus={host['NanoCpus'] / 1e9}",
        f"--pids-limit={host['PidsLimit']}",
        *([f"--user={config['User']}"] if config.get("User") else []),
        *(["--read-only"] if host.get("ReadonlyRootfs") else []),
        *(f"--tmpfs={path}:{opts}" for path, opts in (host.get("Tmpfs") or {}).items()),
        *(f"--cap-drop={cap}" for cap in host.get("CapDrop") or []),
        *(f"--cap-add={cap}" for cap in host.get("CapAdd") or []),
        *(f"--security-opt={opt}" for opt in host.get("SecurityOpt") or []),
    ]
    return run(
        "docker", "run", "-d", "--name", name, "--label", "strata-bench=volumes", "--network", "none",
        *options, "-v", f"{volume}:{MOUNT}", config["Image"],
    ).strip()  # fmt: skip


def device_name(path: Path) -> str:
    """The block device the filesystem holding `path` is on (vda, loop0, ...)."""
    device = os.stat(path).st_dev
    return Path(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}").resolve().name


def filesystem(path: Path) -> str:
    """What `path` is on, in words: the type, the device, whether ext4 keeps a journal, a loop's direct I/O."""
    name = device_name(path)
    kind = run("findmnt", "-n", "-o", "FSTYPE", "-T", str(path)).strip()
    words = [f"{kind} on {name}"]
    if kind == "ext4":
        words.append("journal" if Path(f"/proc/fs/jbd2/{name}-8").exists() else "no journal")
    dio = Path(f"/sys/block/{name}/loop/dio")
    if dio.exists():
        words.append(f"loop direct I/O {'on' if dio.read_text().strip() == '1' else 'off'}")
    return ", ".join(words)


def leftover_mounts(scratch: Path) -> list[str]:
    """Mount points under `scratch` (deepest first), unmounted lazily."""
    points = []
    for line in Path("/proc/mounts").read_text().splitlines():
        point = line.split()[1].encode().decode("unicode_escape")  # /proc/mounts escapes spaces as \040
        if point == str(scratch) or point.startswith(f"{scratch}/"):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
    return points


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="throughput runs, alternating which side goes first")
    parser.add_argument("--creates", type=int, default=5, help="volumes created (and timed) one after another")
    parser.add_argument("--create-mib", type=int, default=1024, help="size of each timed volume")
    parser.add_argument("--seq-mib", type=int, default=1024, help="sequential write's size")
    parser.add_argument("--random-file-mib", type=int, default=256, help="file the random writes land in")
    parser.add_argument("--random-writes", type=int, default=65536, help="4 KiB writes before the one fsync")
    parser.add_argument(
        "--sync-writes",
        type=int,
        default=8000,
        help="4 KiB O_DSYNC writes, and as many fsynced ones (fewer on a slow disk)",
    )
    parser.add_argument("--memory-mib", type=int, default=256, help="the app's memory (its page cache counts)")
    parser.add_argument("--cpu-millicores", type=int, default=1000)
    parser.add_argument("--random-tool", choices=("auto", "c", "sh"), default="auto")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("volumes are loop mounts: run as root")

    plain_volume = plain_name = f"strata-bench-volumes-{os.getpid()}"  # the baseline's volume and container
    with tempfile.TemporaryDirectory(prefix="strata-bench-volumes-", ignore_cleanup_errors=True) as scratch_dir:
        scratch = Path(scratch_dir)
        randwrite = None if args.random_tool == "sh" else compile_randwrite(scratch)
        if args.random_tool == "c" and randwrite is None:
            raise SystemExit("--random-tool c needs gcc and a static libc")
        bench = Bench(args, "c" if randwrite else "sh")
        home = scratch / "home"
        daemon = strata_daemon.start(
            home, "--local-node", "--gateway", f"127.0.0.1:{strata_daemon.free_port()}", "--gateway-admin",
            f"127.0.0.1:{strata_daemon.free_port()}", "--ssh", "none", "--https", "none",
        )  # fmt: skip
        platform = ""
        results: dict[tuple[str, str], list[float]] = {}
        setting = ""
        try:
            platform = (home / "platform-id").read_text().strip()
            token = (home / "operator.token").read_text().strip()
            with StrataClient(socket=home / "api.sock", token=token, timeout=TIMEOUT_SECONDS) as client:
                client.bootstrap_images()
                client.create_tenant(TenantCreate(name=TENANT, plan=PLAN))
                creates, deletes = time_creates(client, args.creates, args.create_mib)
                size = max(1024, args.seq_mib + args.random_file_mib + 128)
                try:
                    client.create_volume(TENANT, VolumeCreate(name=VOLUME, size_mib=size))
                    spec = AppSpec(
                        image="strata/static", replicas=1, cpu_millicores=args.cpu_millicores,
                        memory_mib=args.memory_mib, volumes=[VolumeMount(volume=VOLUME, path=MOUNT)],
                    )  # fmt: skip
                    client.deploy(TENANT, APP, spec)
                    app = app_container(client)
                    run("docker", "volume", "create", "--label", "strata-bench=volumes", plain_volume)
                    plain_dir = Path(run("docker", "volume", "inspect", "-f", "{{.Mountpoint}}", plain_volume).strip())
                    strata_dir = home / "volumes" / TENANT / VOLUME
                    # The volume's root is 0777 (any user may write); the plain volume's is root's: made alike.
                    os.chmod(plain_dir, os.stat(strata_dir).st_mode & 0o7777)
                    base = baseline_container(app, plain_volume, plain_name)
                    sides = (Side("strata", app, strata_dir), Side("plain", base, plain_dir))
                    user = json.loads(run("docker", "inspect", "-f", "{{json .Config.User}}", app)) or "root"
                    setting = (
                        f"strata/static as {user}, {args.memory_mib} MiB, {args.cpu_millicores / 1000:g} CPU; "
                        f"{args.runs} run(s) alternating first side, medians\n"
                        f"strata volume: {filesystem(strata_dir)}; plain volume: {filesystem(plain_dir)}"
                    )
                    for side in sides:
                        if randwrite is not None:
                            shutil.copy(randwrite, side.host_dir / "randwrite")
                            os.chmod(side.host_dir / "randwrite", 0o755)
                        bench.prepare(side)
                    for number in range(args.runs):
                        for side in sides if number % 2 == 0 else sides[::-1]:
                            for workload in WORKLOADS:
                                if workload.key == "dsync" and bench.tool == "sh":
                                    continue  # busybox's dd has no oflag=dsync
                                value = bench.measure(side, workload)
                                results.setdefault((side.label, workload.key), []).append(value)
                finally:
                    cleanup(client, plain_name, plain_volume)
        finally:
            strata_daemon.stop(daemon, platform)
            left = leftover_mounts(scratch)
            if left:
                print(f"unmounted (lazily) what was left mounted: {', '.join(left)}", file=sys.stderr)

    report(args, bench.tool, creates, deletes, results, setting)
    return 0


def cleanup(client: StrataClient, container: str, volume: str) -> None:
    """The baseline's container and volume; the app, then its volume through the API (which unmounts it)."""
    subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
    subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, check=False)
    try:
        client.delete_app(TENANT, APP)
    except ApiError:
        pass
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if not client.instances(TENANT, APP):
                break
        except ApiError:
            break  # the app is gone, and its instances with it
        time.sleep(0.2)
    try:
        client.delete_volume(TENANT, VOLUME, force=True)
    except ApiError as exc:
        if exc.status != 404:
            print(f"deleting volume {VOLUME}: {exc.message}", file=sys.stderr)


def report(
    args: argparse.Namespace,
    tool: str,
    creates: list[float],
    deletes: list[float],
    results: dict[tuple[str, str], list[float]],
    setting: str,
) -> None:
    met = "met" if creates and max(creates) <= CREATE_GOAL_SECONDS else "missed"
    print(
        f"volume create, {args.create_mib} MiB, {len(creates)} through the API: min {min(creates):.2f} s, "
        f"median {statistics.median(creates):.2f} s, max {max(creates):.2f} s (goal <= {CREATE_GOAL_SECONDS:.0f} s:"
        f" {met}); delete median {statistics.median(deletes):.2f} s"
    )
    print(f"in a container of {setting}")
    sizes = {
        "seq": f"{args.seq_mib} MiB",
        "end": f"{args.random_writes} into {args.random_file_mib} MiB",
        "dsync": f"{args.sync_writes} into {args.random_file_mib} MiB",
        "fsync": f"{args.sync_writes} into {args.random_file_mib} MiB",
    }
    for workload in (w for w in WORKLOADS if ("plain", w.key) in results):
        plain = statistics.median(results[("plain", workload.key)])
        strata = statistics.median(results[("strata", workload.key)])
        ratio = strata / plain
        print(
            f"  {workload.label + ', ' + sizes[workload.key]:<58} plain {plain:8.0f} {workload.unit:<8} | "
            f"strata {strata:8.0f} {workload.unit:<8} ({ratio:4.2f}x; goal >= {RATIO_GOAL}x: "
            f"{'met' if ratio >= RATIO_GOAL else 'missed'})"
        )
        for label in ("plain", "strata"):
            print(f"      {label:<6} runs: {', '.join(f'{v:.0f}' for v in results[(label, workload.key)])}")
    if tool == "sh":
        print("  (random writes by a shell loop of one dd per write, timed from outside: process start-up is most of")
        print("   each write's time, the same on both sides, so the ratio understates any difference)")


if __name__ == "__main__":
    sys.exit(main())
