"""A build context as Docker's CLI makes it: a tar of a directory without what its `.dockerignore` excludes.

Shared by the clients that upload contexts (the CLI's `apps deploy --build DIR`). The rules are Docker's
(moby's `dockerignore.ReadAll` and `patternmatcher`), not gitignore's:

- a line starting with `#` is a comment; lines are stripped; blank lines are skipped;
- `!` makes a line an exception (it re-includes what an earlier line excluded);
- a pattern is cleaned as a path (`./a/` is `a`, `a//b/../c` is `a/c`) and a leading `/` dropped: every
  pattern is relative to the context's top, so `foo` excludes `./foo` only, never `sub/foo` (use `**/foo`);
- `*` matches any run of characters but `/`, `?` one character but `/`, `[a-z]` a class, `\\` escapes,
  and `**` any number of directories (even none): `**/*.log`, `a/**/b`, a trailing `**` anything below;
- a path is excluded when a pattern matches it or one of its parent directories; the last pattern that
  matches decides.

The `Dockerfile` and `.dockerignore` are always sent (the engine reads them, and leaves out of the build what
the `.dockerignore` says of them), as Docker's CLI does.
"""

import posixpath
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

IGNORE_FILE = ".dockerignore"
ALWAYS_SENT = frozenset({"Dockerfile", IGNORE_FILE})
_REGEX_SPECIAL = ".+()|{}$"  # literal in a pattern, special in a regular expression


class BadPattern(ValueError):
    """A `.dockerignore` line Docker would refuse; the message names it."""


@dataclass(frozen=True)
class _Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern[str]


class DockerIgnore:
    """The patterns of a `.dockerignore`; `excludes(path)` says whether a path (relative, `/`-separated) is
    left out of the context."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.patterns: list[_Pattern] = []
        for number, line in enumerate(lines):
            if number == 0:
                line = line.removeprefix("\ufeff")
            if line.startswith("#"):
                continue
            line = line.strip()
            if not line:
                continue
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
                if not line:
                    raise BadPattern('illegal exclusion pattern: "!"')
            text = _clean(line)
            self.patterns.append(_Pattern(text, exclusion, _compile(text)))

    @classmethod
    def of(cls, directory: Path) -> "DockerIgnore":
        """The directory's `.dockerignore`, or no patterns when it has none."""
        path = directory / IGNORE_FILE
        return cls(path.read_text(errors="replace").splitlines() if path.is_file() else [])

    @property
    def has_exceptions(self) -> bool:
        return any(pattern.exclusion for pattern in self.patterns)

    def excludes(self, path: str) -> bool:
        parents = path.split("/")[:-1]
        candidates = [path, *("/".join(parents[: depth + 1]) for depth in range(len(parents)))]
        excluded = False
        for pattern in self.patterns:
            if pattern.exclusion != excluded:
                continue  # an exclusion only matters once excluded; an inclusion only until then
            if any(pattern.regex.match(candidate) for candidate in candidates):
                excluded = not pattern.exclusion
        return excluded


def write_context(directory: Path, out: IO[bytes]) -> int:
    """Write the tar of `directory`'s build context to `out`; returns how many entries it holds. Entries are
    owned by root (as Docker's CLI sends them); symbolic links are kept as links, never followed."""
    ignore = DockerIgnore.of(directory)
    count = 0
    with tarfile.open(fileobj=out, mode="w|") as tar:
        for path, relative in _walk(directory, ignore):
            tar.add(path, arcname=relative, recursive=False, filter=_as_root)
            count += 1
    return count


def _walk(directory: Path, ignore: DockerIgnore, top: Path | None = None) -> Iterator[tuple[Path, str]]:
    """(path, relative name) of everything sent, parents before children, in name order. An excluded
    directory is not entered unless an exception (`!`) might re-include something below it."""
    top = top or directory
    for child in sorted(directory.iterdir(), key=lambda child: child.name):
        relative = child.relative_to(top).as_posix()
        excluded = relative not in ALWAYS_SENT and ignore.excludes(relative)
        if not excluded:
            yield child, relative
        if child.is_dir() and not child.is_symlink() and not (excluded and not ignore.has_exceptions):
            yield from _walk(child, ignore, top)


def _as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _clean(pattern: str) -> str:
    """Go's `filepath.Clean`, then a leading `/` dropped (patterns are relative to the context)."""
    cleaned = posixpath.normpath(pattern)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if len(cleaned) > 1 and cleaned.startswith("/"):
        cleaned = cleaned[1:]
    return cleaned


def _compile(pattern: str) -> re.Pattern[str]:
    """moby's patternmatcher, translated: the whole path must match."""
    regex = "^"
    i = 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*":
            if i < len(pattern) and pattern[i] == "*":
                i += 1
                if i < len(pattern) and pattern[i] == "/":
                    i += 1  # `**/` is `**`
                regex += ".*" if i == len(pattern) else "(.*/)?"
            else:
                regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char in _REGEX_SPECIAL:
            regex += "\\" + char
        elif char == "\\":
            regex += re.escape(pattern[i]) if i < len(pattern) else "\\\\"
            i += 1
        else:
            regex += char  # `[`, `]` and a class's `^` keep their meaning, as in Go's filepath.Match
    try:
        return re.compile(regex + "$")
    except re.error:
        raise BadPattern(f"syntax error in .dockerignore pattern {pattern!r}") from None
