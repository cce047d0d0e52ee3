"""strata/postgres:15, the image of managed PostgreSQL: Debian's PostgreSQL 15, built here with no registry.

`postgres/build.sh` debootstraps its root filesystem (as root; the debs and the pristine debootstrapped tree are
cached in the work directory), `docker import` makes that an image, and `postgres/Dockerfile` adds the entrypoint
and the metadata over it (a second step because Docker 20.10's `import --change` refuses STOPSIGNAL). The image
carries the digest of its recipe in a label and is rebuilt only when the recipe changes. It reaches other nodes
as the sample images do (`images.ship`: save, then load).

The contract of a container of it (`postgres/entrypoint.sh`):
- it runs as postgres (`POSTGRES_UID`:`POSTGRES_GID`) throughout, needs no capability (`--cap-drop ALL`) and
  runs on a read-only root (its label says so) given a writable /tmp, the platform's tmpfs: the server's Unix
  socket and lock file go there (/run/postgresql leads to it), and dynamic shared memory to Docker's /dev/shm;
- the volume is mounted on `DATA_MOUNT`, writable by postgres (a fresh volume's root is mode 0777); the cluster
  is `PGDATA`, a directory of it, made on the first start and used as it is on later ones;
- env, read on the first start only: `POSTGRES_PASSWORD` (required; one line), the password of the superuser
  postgres and of `POSTGRES_USER` (default app), a role owning the database `POSTGRES_DB` (default app); and at
  every start `PORT` (default `PORT`, 5432), the port the server listens on, on every address. Passwords are
  checked with SCRAM-SHA-256 over TCP; over the socket postgres alone connects, as itself (peer: `docker exec`);
- it is sized to start within 128 MiB (shared_buffers 16MB, 50 connections; ALTER SYSTEM changes that);
- its stop signal is SIGINT, postgres' fast shutdown: clients are cut off, a checkpoint is written, exit 0.
"""

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from hosting.iaas.build_script import build_lock, run_script

IMAGE = "strata/postgres:15"
RECIPE_LABEL = "strata.recipe"
POSTGRES_DIR = Path(__file__).parent / "postgres"
DEBIAN_SUITE = "bookworm"
PACKAGES = ("postgresql-15",)
# Debian's postgres user as its package makes it in this recipe's rootfs; the files of every cluster on every volume
# are theirs, so a build giving other ids fails rather than make an image unable to read existing data.
POSTGRES_UID, POSTGRES_GID = 100, 102
DATA_MOUNT = "/var/lib/postgresql/data"
PGDATA = f"{DATA_MOUNT}/pgdata"
PORT = 5432

LOG_FILE = "build.log"  # the last build's whole output
ROOTFS = "rootfs"  # the root filesystem being imported; gone after the build


class PostgresImageError(Exception):
    """The image could not be built; the message says why (ending with the tail of the build log, if it ran)."""


def recipe_digest() -> str:
    """sha256 of everything the image is made from: the files of `POSTGRES_DIR`, the suite, the packages, the ids.
    Not the packages' versions: `force` rebuilds with the mirror's current ones (security updates)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in POSTGRES_DIR.iterdir() if p.is_file()):
        digest.update(f"{path.name} {hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    digest.update(f"{DEBIAN_SUITE}\n{','.join(sorted(PACKAGES))}\n{POSTGRES_UID}:{POSTGRES_GID}\n".encode())
    return digest.hexdigest()


def built_image(docker: Sequence[str] = ("docker",)) -> str | None:
    """The id of `IMAGE` on the engine `docker` reaches if it is of the current recipe, else None."""
    found = _image(docker)
    return found[0] if found and found[1] == recipe_digest() else None


def build_postgres_image(
    work_dir: Path,
    *,
    docker: Sequence[str] = ("docker",),
    force: bool = False,
    log: Callable[[str], None] = lambda step: None,
) -> str:
    """Build `IMAGE` on the engine that the CLI command `docker` (say, `("docker", "-H", url)`) reaches, unless it
    is there of the current recipe (or `force`); returns the image's id. Blocks for minutes when it builds (run it
    in a thread); needs root, debootstrap, the docker CLI and this host's apt mirror, and no registry.

    `work_dir` keeps the debs and the pristine debootstrapped tree, so a rebuild downloads nothing, and the last
    build's log. A lock on it makes a concurrent build wait and then return this one's image (builds in two work
    directories may both build: the last one tagged wins). The images replaced are removed unless a container
    still uses them. `log` gets one line per step.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    with build_lock(work_dir, log):
        digest, previous = recipe_digest(), _image(docker)
        if previous and previous[1] == digest and not force:
            return previous[0]
        rootfs = work_dir / ROOTFS
        shutil.rmtree(rootfs, ignore_errors=True)
        try:
            _run_build(rootfs, work_dir, log)
            _check_ids(rootfs)
            log(f"docker import {rootfs}")
            base = _import(docker, rootfs)
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
        log(f"docker build {IMAGE} from {base[:19]}")
        image_id = _build(docker, base, digest)
        # the tag's image now: another build (of another work directory) may have moved it since `previous`
        replaced = {found[0] for found in (previous, _image(docker)) if found} - {image_id}
        _docker(docker, "tag", image_id, IMAGE)
        for old in replaced:  # refused while a container uses it: the engine's business then
            subprocess.run([*docker, "image", "rm", old], capture_output=True, check=False)
        return image_id


def _run_build(rootfs: Path, work_dir: Path, log: Callable[[str], None]) -> None:
    """Run build.sh making `rootfs`, its whole output into the log file, its steps to `log`."""
    env = {"OUT": str(rootfs), "WORK": str(work_dir), "SUITE": DEBIAN_SUITE, "PACKAGES": ",".join(PACKAGES)}
    log_path = work_dir / LOG_FILE
    status, tail = run_script(POSTGRES_DIR / "build.sh", env, log_path, log)
    if status != 0:
        raise PostgresImageError(f"{IMAGE} rootfs build failed (exit status {status}); log {log_path}, ending:\n{tail}")


def _check_ids(rootfs: Path) -> None:
    """The rootfs's postgres user must be `POSTGRES_UID`:`POSTGRES_GID`, the owner of every existing cluster."""
    for line in (rootfs / "etc" / "passwd").read_text().splitlines():
        name, _, uid, gid, *_ = line.split(":")
        if name == "postgres":
            if (int(uid), int(gid)) != (POSTGRES_UID, POSTGRES_GID):
                raise PostgresImageError(
                    f"Debian made postgres {uid}:{gid}, not {POSTGRES_UID}:{POSTGRES_GID}: clusters on existing "
                    "volumes would be unreadable (make build.sh create postgres with the old ids before the package)"
                )
            return
    raise PostgresImageError("the rootfs has no postgres user")


def _import(docker: Sequence[str], rootfs: Path) -> str:
    """`docker import` the tree `rootfs` (owners by number), untagged; returns the image id."""
    with (
        subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."], stdout=subprocess.PIPE) as tar,
        subprocess.Popen(
            [*docker, "import", "--message", f"{IMAGE} rootfs", "-"],
            stdin=tar.stdout,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as importing,
    ):
        assert tar.stdout is not None
        tar.stdout.close()  # import's alone now: should import stop reading, tar gets SIGPIPE, not a block
        out, err = importing.communicate()
    if tar.returncode != 0 or importing.returncode != 0:
        raise PostgresImageError(f"docker import failed (tar exit status {tar.returncode}): {err.strip()}")
    return out.strip()


def _build(docker: Sequence[str], base: str, digest: str) -> str:
    """Build the image from `POSTGRES_DIR`'s Dockerfile over the imported `base`, untagged; returns its id. The
    legacy builder: it takes an image id in FROM and needs nothing BuildKit would fetch."""
    args = {"BASE": base, "POSTGRES_UID": str(POSTGRES_UID), "POSTGRES_GID": str(POSTGRES_GID)}
    built = subprocess.run(
        [
            *docker,
            "build",
            "--quiet",
            "--pull=false",
            *(arg for name, value in args.items() for arg in ("--build-arg", f"{name}={value}")),
            "--label",
            f"{RECIPE_LABEL}={digest}",
            str(POSTGRES_DIR),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    if built.returncode != 0:
        subprocess.run([*docker, "image", "rm", base], capture_output=True, check=False)
        raise PostgresImageError(f"docker build {IMAGE} failed: {built.stderr.strip()}")
    return built.stdout.strip()


def _docker(docker: Sequence[str], *args: str) -> None:
    done = subprocess.run([*docker, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PostgresImageError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")


def _image(docker: Sequence[str]) -> tuple[str, str] | None:
    """`IMAGE`'s id and recipe digest ("" if it has none), if the engine has it."""
    found = subprocess.run(
        [*docker, "image", "inspect", "--format", f'{{{{.Id}}}} {{{{index .Config.Labels "{RECIPE_LABEL}"}}}}', IMAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    image_id, _, digest = found.stdout.strip().partition(" ")
    return (image_id, digest) if found.returncode == 0 and image_id else None
