import fcntl
import shutil
import threading
import time
from pathlib import Path

from hosting.iaas.build_script import LOCK_FILE
from hosting.iaas.guest_image import (
    DISK,
    GUEST_DIR,
    INITRD,
    KERNEL,
    PACKAGES,
    RECIPE_FILE,
    NodeImage,
    build_node_image,
    find_node_image,
    fw_cfg_args,
    recipe_digest,
)


def test_the_recipe_digest_is_stable() -> None:
    assert recipe_digest() == recipe_digest()
    assert recipe_digest(packages=tuple(reversed(PACKAGES))) == recipe_digest()  # a set, not a sequence


def test_the_recipe_digest_changes_with_each_ingredient(tmp_path: Path) -> None:
    scripts = tmp_path / "guest"
    shutil.copytree(GUEST_DIR, scripts)
    assert recipe_digest(scripts) == recipe_digest()
    with (scripts / "rc.start").open("a") as rc_start:
        rc_start.write("# one more line\n")
    digests = {
        recipe_digest(),
        recipe_digest(scripts),
        recipe_digest(kernel_flavour="amd64"),
        recipe_digest(suite="trixie"),
        recipe_digest(packages=(*PACKAGES, "strace")),
    }
    assert len(digests) == 5


def _fake_image(images_dir: Path, digest: str, files: tuple[str, ...]) -> Path:
    directory = images_dir / f"node-{digest[:12]}"
    directory.mkdir(parents=True)
    for name in files:
        (directory / name).write_text(digest if name == RECIPE_FILE else "x")
    return directory


def test_no_image_is_found_in_an_empty_directory(tmp_path: Path) -> None:
    assert find_node_image(tmp_path) is None
    assert find_node_image(tmp_path / "missing") is None


def test_an_image_without_its_recipe_stamp_or_a_part_is_not_complete(tmp_path: Path) -> None:
    digest = recipe_digest()
    _fake_image(tmp_path / "unstamped", digest, (KERNEL, INITRD, DISK))
    _fake_image(tmp_path / "no-disk", digest, (KERNEL, INITRD, RECIPE_FILE))
    assert find_node_image(tmp_path / "unstamped") is None
    assert find_node_image(tmp_path / "no-disk") is None


def test_an_image_of_another_recipe_is_not_found(tmp_path: Path) -> None:
    digest = recipe_digest()
    directory = _fake_image(tmp_path, digest, (KERNEL, INITRD, DISK, RECIPE_FILE))
    (directory / RECIPE_FILE).write_text(recipe_digest(suite="trixie"))
    assert find_node_image(tmp_path) is None


def test_a_complete_image_of_the_current_recipe_is_found(tmp_path: Path) -> None:
    digest = recipe_digest()
    directory = _fake_image(tmp_path, digest, (KERNEL, INITRD, DISK, RECIPE_FILE))
    image = find_node_image(tmp_path)
    assert image is not None
    assert (image.digest, image.kernel, image.initrd, image.disk) == (
        digest,
        directory / KERNEL,
        directory / INITRD,
        directory / DISK,
    )


def test_the_identity_goes_to_the_fw_cfg_names_the_guest_reads(tmp_path: Path) -> None:
    args = fw_cfg_args(authorized_keys=tmp_path / "a", host_key=tmp_path / "k", hostname=tmp_path / "h")
    assert args == [
        "-fw_cfg",
        f"name=opt/strata/authorized_keys,file={tmp_path / 'a'}",
        "-fw_cfg",
        f"name=opt/strata/ssh_host_ed25519_key,file={tmp_path / 'k'}",
        "-fw_cfg",
        f"name=opt/strata/hostname,file={tmp_path / 'h'}",
    ]


def test_a_build_waits_for_the_one_in_progress_then_takes_its_image(tmp_path: Path) -> None:
    _fake_image(tmp_path, recipe_digest(), (KERNEL, INITRD, DISK, RECIPE_FILE))  # what the other build made
    steps: list[str] = []
    built: list[NodeImage] = []
    with (tmp_path / LOCK_FILE).open("w") as other_build:
        fcntl.flock(other_build, fcntl.LOCK_EX)
        waiting = threading.Thread(target=lambda: built.append(build_node_image(tmp_path, log=steps.append)))
        waiting.start()
        deadline = time.monotonic() + 5
        while not steps and time.monotonic() < deadline:
            time.sleep(0.01)
        assert steps == [f"waiting for another build in {tmp_path}"]
        assert waiting.is_alive() and built == []
    waiting.join(5)
    assert built == [find_node_image(tmp_path)]
