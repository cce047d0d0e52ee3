"""Backups of a volume on a VM node, on a fake VM (`FakeDriver`; its guest a `FakeGuestDisks`, which runs the
guest's own tar, find and sha256sum on a directory per disk) and this host's real Docker engine, whose scratch
container reads every backup back. The same through a real QEMU guest: `tests/iaas/test_vm_nodes.py`."""

import asyncio
import os
from pathlib import Path

import pytest
from sqlalchemy import Engine

from hosting.paas import images
from hosting.paas.backups import VolumeBackups
from hosting.paas.docker_runtime import DockerRuntime
from hosting.paas.node_volumes import guest_path
from hosting.paas.nodes import NodeHandle
from strata.config import DEFAULT_DOCKER_URL
from tenants.enums import BackupState
from tenants.errors import Conflict
from tests.unit.test_volume_moves import World

DOCKER_URL = os.environ.get("DOCKER_HOST", DEFAULT_DOCKER_URL)


def tree(root: Path) -> dict[str, str]:
    """Every file and link under `root`, by relative path: a file's content, a link's target."""
    return {
        path.relative_to(root).as_posix(): f"-> {os.readlink(path)}" if path.is_symlink() else path.read_text()
        for path in sorted(root.rglob("*"))
        if path.is_symlink() or path.is_file()
    }


def test_a_volume_on_a_vm_node_is_archived_in_its_guest_verified_here_and_restored_there(
    engine: Engine, tmp_path: Path
) -> None:
    world = World(engine, tmp_path / "volumes")
    world.tenant()
    for name in ("local", "vm1"):
        world.node(name)
    host = DockerRuntime("local", DOCKER_URL)  # the scratch containers' engine
    world.pool.attach(NodeHandle(host, "local", DOCKER_URL, reachable=True))
    world.volume("vm1")
    guest = world.guests["vm1"]
    files = guest.files(guest_path("acme", "data"))
    (files / "dir").mkdir()
    (files / "dir" / "a").write_text("as it was")
    (files / "secret").write_text("private")
    (files / "secret").chmod(0o600)
    (files / "link").symlink_to("dir/a")
    (files / "lost+found").mkdir()  # ext4's own: neither archived nor replaced
    (files / "lost+found" / "#12").write_text("what fsck found")
    taken = tree(files)
    store = VolumeBackups(engine, world.pool, world.store, tmp_path / "backups")

    async def scenario() -> None:
        try:
            await images.bootstrap([host])  # strata/static, the scratch image (cached by Docker)
            done = await store.create("op", "acme", "data")
            assert (done.state, done.message, done.files) == (BackupState.VERIFIED, None, 2)
            assert guest.calls[-1] == f"archive {guest_path('acme', 'data')}"  # streamed from the guest

            (files / "dir" / "a").write_text("changed since")
            (files / "new").write_text("not in the backup")
            guest.answering = False  # a restore that cannot reach the guest touches nothing, saying why
            with pytest.raises(Conflict, match="the guest of node vm1 does not answer: .*; nothing was touched"):
                await store.restore("op", "acme", done.id, None)
            assert (files / "new").exists() and (files / "dir" / "a").read_text() == "changed since"

            guest.answering = True
            restored = await store.restore("op", "acme", done.id, None)
            assert (restored.name, restored.node) == ("data", "vm1")
            assert guest.calls[-2:] == [f"{verb} {guest_path('acme', 'data')}" for verb in ("extract", "sums")]
        finally:
            await host.close()

    asyncio.run(scenario())
    assert tree(files) == taken and (files / "secret").stat().st_mode & 0o777 == 0o600
