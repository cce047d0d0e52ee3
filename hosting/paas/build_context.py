"""The Dockerfile of an uploaded build context, read before the build starts (`dockerfile.named_images` then
checks the images it names).

The context is read as a stream, once, in bounded memory whatever was uploaded: an uncompressed tar only (a
compressed one is refused, not inflated: an xz bomb inflates a thousandfold), at most `MAX_ENTRIES` entries
(no `TarInfo` is kept), and only the Dockerfile's content, up to `MAX_DOCKERFILE_BYTES`. The Dockerfile is the
last entry that extraction leaves at the top (`./Dockerfile`, `a/../Dockerfile`): it must be a file, not a link
(the engine would follow it to another file of the context), nor written through a link the tar makes. It
must be UTF-8: the engine's parser reads bytes, and undecodable ones would read differently here.
"""

import posixpath
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from tenants.errors import Invalid

MAX_ENTRIES = 100_000
MAX_DOCKERFILE_BYTES = 1024 * 1024
NO_DOCKERFILE = (
    "the build context has no Dockerfile at its top; add one, e.g. for a static site:\n"
    "    FROM strata/static\n"
    "    COPY . /www"
)
NOT_A_TAR = "the build context must be an uncompressed tar archive (application/x-tar)"
_COMPRESSED = {  # magic numbers of the compressions tarfile (or another reader) might inflate
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}


def check_context(path: Path) -> str:
    """The text of the Dockerfile at the top of the tar at `path` (its last entry, as extracting it leaves), or
    `Invalid` saying what to do."""
    with path.open("rb") as file:
        head = file.read(8)
        for magic, name in _COMPRESSED.items():
            if head.startswith(magic):
                raise Invalid(
                    f"the build context is compressed ({name}): send it as an uncompressed tar", field="context"
                )
        file.seek(0)
        data = _read_dockerfile(file)
    if data is None:
        raise Invalid(NO_DOCKERFILE, field="context")
    if len(data) > MAX_DOCKERFILE_BYTES:
        raise Invalid(f"the Dockerfile is over {MAX_DOCKERFILE_BYTES // 1024} KiB", field="context")
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise Invalid(f"the Dockerfile is not UTF-8 text (at byte {exc.start})", field="context") from None


def _read_dockerfile(file: BinaryIO) -> bytes | None:
    """The content (up to one byte past the cap) of the `Dockerfile` the tar leaves at its top, or None."""
    data: bytes | None = None
    links: set[str] = set()  # the symbolic links it makes: extracting `link/Dockerfile` writes through them
    try:
        with tarfile.open(fileobj=file, mode="r|") as tar:
            for count, member in enumerate(tar, start=1):
                tar.members = []  # type: ignore[attr-defined]  # keep no TarInfo: a stream is read once
                if count > MAX_ENTRIES:
                    raise Invalid(
                        f"the build context has over {MAX_ENTRIES:,} entries; leave some out with a .dockerignore",
                        field="context",
                    )
                name = posixpath.normpath("/" + member.name.lstrip("/"))  # "//x" would stay "//x"
                if member.issym():
                    links.add(name)
                if posixpath.basename(name) != "Dockerfile":
                    continue
                through = [link for link in _parents(name) if link in links]
                if through:
                    raise Invalid(f"the build context's {member.name} is under a link ({through[0]})", field="context")
                if name != "/Dockerfile":
                    continue
                if member.issym() or member.islnk():
                    raise Invalid("the build context's Dockerfile must be a file, not a link", field="context")
                content = tar.extractfile(member) if member.isfile() else None
                data = content.read(MAX_DOCKERFILE_BYTES + 1) if content is not None else None
    except tarfile.TarError:
        raise Invalid(NOT_A_TAR, field="context") from None
    return data


def _parents(name: str) -> Iterator[str]:
    """`/a` and `/a/b` of `/a/b/c`."""
    parts = name.split("/")[1:-1]
    for index in range(1, len(parts) + 1):
        yield "/" + "/".join(parts[:index])
