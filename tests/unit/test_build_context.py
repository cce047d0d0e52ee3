"""The Dockerfile of an uploaded build context: read as a stream, bounded, uncompressed only, as extraction
leaves it at the top."""

import io
import lzma
import tarfile
from pathlib import Path

import pytest

from hosting.paas import build_context
from hosting.paas.build_context import check_context
from tenants.errors import Invalid


def tar_of(*entries: tuple[str, str | None], link: str = "") -> bytes:
    """A tar of (name, text) files; text None: a symbolic link to `link`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in entries:
            info = tarfile.TarInfo(name)
            if text is None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                data = text.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def check(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "context.tar"
    path.write_bytes(data)
    return check_context(path)


def test_the_last_dockerfile_at_the_top_is_read(tmp_path: Path) -> None:
    data = tar_of(("Dockerfile", "FROM a\n"), ("sub/Dockerfile", "FROM b\n"), ("./Dockerfile", "FROM c\n"))
    assert check(tmp_path, data) == "FROM c\n"
    assert check(tmp_path, tar_of(("Dockerfile", "FROM a\n"), ("x/../././/Dockerfile", "FROM d\n"))) == "FROM d\n"
    assert check(tmp_path, tar_of(("Dockerfile", "FROM a\n"), ("//Dockerfile", "FROM e\n"))) == "FROM e\n"


def test_a_compressed_context_is_refused_not_inflated(tmp_path: Path) -> None:
    bomb = lzma.compress(tar_of(("Dockerfile", "FROM a\n"), ("zeros", "\0" * 1_000_000)))
    with pytest.raises(Invalid, match=r"the build context is compressed \(xz\): send it as an uncompressed tar"):
        check(tmp_path, bomb)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.addfile(tarfile.TarInfo("x"))
    with pytest.raises(Invalid, match=r"compressed \(gzip\)"):
        check(tmp_path, buffer.getvalue())
    with pytest.raises(Invalid, match="must be an uncompressed tar archive"):
        check(tmp_path, b"not a tar at all" * 100)


def test_the_number_of_entries_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_context, "MAX_ENTRIES", 3)
    assert check(tmp_path, tar_of(("a", ""), ("b", ""), ("Dockerfile", "FROM a\n"))) == "FROM a\n"
    with pytest.raises(Invalid, match="the build context has over 3 entries"):
        check(tmp_path, tar_of(("a", ""), ("b", ""), ("c", ""), ("Dockerfile", "FROM a\n")))


def test_the_dockerfile_is_capped_and_must_be_utf8(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="the Dockerfile is over 1024 KiB"):
        check(tmp_path, tar_of(("Dockerfile", "#" * (1024 * 1024 + 1))))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = 12
        tar.addfile(info, io.BytesIO(b"FROM a\nRUN \x85\n"))
    with pytest.raises(Invalid, match="the Dockerfile is not UTF-8 text"):
        check(tmp_path, buffer.getvalue())
    with pytest.raises(Invalid, match="has no Dockerfile at its top"):
        check(tmp_path, tar_of(("sub/Dockerfile", "FROM a\n")))


def test_a_dockerfile_that_is_a_link_or_under_one_is_refused(tmp_path: Path) -> None:
    # the engine follows the link to another file of the context: the check read an empty Dockerfile
    with pytest.raises(Invalid, match="Dockerfile must be a file, not a link"):
        check(tmp_path, tar_of(("other", "FROM registry.a.com/private:1\n"), ("Dockerfile", None), link="other"))
    # extracting `x/Dockerfile` through `x` -> `.` writes the top's Dockerfile
    data = tar_of(("Dockerfile", "FROM a\n"), ("x", None), ("x/Dockerfile", "FROM b\n"), link=".")
    with pytest.raises(Invalid, match=r"x/Dockerfile is under a link \(/x\)"):
        check(tmp_path, data)
