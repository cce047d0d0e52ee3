"""The images a Dockerfile names, read as the engine's legacy builder reads it, so that a build is checked
before it starts: the engine resolves `FROM` and `COPY --from=` against any image it holds, whoever's.

The reading follows moby's parser: parser directives at the top (`# escape=` changes the line continuation
character), comment lines anywhere (also inside a continued instruction), empty continuation lines,
case-insensitive instructions, `--flag=value` words before the arguments. `FROM [--platform=..] IMAGE [AS name]`
names an image unless IMAGE is an earlier stage or `scratch`; `COPY --from=X` unless X is an earlier stage (by
name or index). `ONBUILD COPY --from=X` runs in a later build (a later stage's, or a child image's), where what
X means is not known here: it is taken as an image always. Whatever the engine would read otherwise than as
written here (quotes, escapes, variables) is refused rather than guessed.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass

from tenants.errors import Invalid

SCRATCH = "scratch"
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")  # no quotes, escapes or variables
NO_VARIABLES = "name the image: FROM with build arguments is not supported"


@dataclass(frozen=True)
class NamedImage:
    """An image a Dockerfile builds from or copies from: `instruction` (`FROM`, `COPY --from`) at `line`."""

    instruction: str
    name: str
    line: int

    def describe(self) -> str:
        return f"{self.instruction} {self.name}" if self.instruction == "FROM" else f"{self.instruction}={self.name}"


def instructions(text: str) -> Iterator[tuple[int, str]]:
    """(line number, the whole instruction) of each instruction, continuations joined and comments dropped."""
    lines = [line.removesuffix("\r") for line in text.removeprefix("\ufeff").split("\n")]
    escape, directives, index = "\\", True, 0
    while index < len(lines):
        line = lines[index].lstrip()
        index += 1
        number = index
        if directives:
            directive = _DIRECTIVE.match(line)
            if directive is None:
                directives = False
            elif directive.group(1).lower() == "escape":
                escape = directive.group(2)
                if escape not in ("\\", "`"):
                    raise Invalid(f"Dockerfile line {number}: invalid escape token {escape!r}", field="context")
        if line.startswith("#"):
            continue
        line, continued = _continued(line, escape)
        if not continued and not line.strip():
            continue
        while continued and index < len(lines):
            part = lines[index]
            index += 1
            if part.lstrip().startswith("#") or not part.strip():  # a comment, or an empty continuation line
                continue
            part, continued = _continued(part, escape)
            line += part
        yield number, line


def named_images(text: str) -> list[NamedImage]:
    """The images (not stages, not `scratch`) the Dockerfile `text` names, in order; `Invalid` for a name
    that is not written out (a variable, quotes) or not a reference."""
    stages: list[str] = []
    named: list[NamedImage] = []
    for number, line in instructions(text):
        command, flags, args = _split(line)
        if command == "onbuild" and args:
            command, flags, args = _split(" ".join(args))
            if command == "copy" and "from" in flags:
                named.append(_image(number, "COPY --from", flags["from"]))
        elif command == "from" and args:
            name = args[0]
            if name != SCRATCH and name.lower() not in stages:
                named.append(_image(number, "FROM", name))
            stages.append(args[2].lower() if len(args) >= 3 and args[1].lower() == "as" else "")
        elif command == "copy" and "from" in flags:
            source = flags["from"]
            index = int(source) if source.isdigit() else -1
            if source.lower() not in stages and not 0 <= index < len(stages):
                named.append(_image(number, "COPY --from", source))
    return named


def trigger_images(triggers: list[str]) -> list[NamedImage]:
    """The images an image's ONBUILD triggers copy from (they run in the build of an image FROM it)."""
    return named_images("\n".join(f"ONBUILD {trigger}" for trigger in triggers if "\n" not in trigger))


def _image(number: int, instruction: str, name: str) -> NamedImage:
    if "$" in name:
        what = (
            NO_VARIABLES
            if instruction == "FROM"
            else "name the image: COPY --from with build arguments is not supported"
        )
        raise Invalid(f"Dockerfile line {number}: {instruction} {name}: {what}", field="context")
    if not _REFERENCE.match(name):
        raise Invalid(f"Dockerfile line {number}: {instruction} {name}: not an image reference", field="context")
    return NamedImage(instruction, name, number)


def _continued(line: str, escape: str) -> tuple[str, bool]:
    """The line without its continuation character, and whether it had one."""
    found = re.search(re.escape(escape) + r"[ \t]*$", line)
    return (line[: found.start()], True) if found else (line, False)


def _split(line: str) -> tuple[str, dict[str, str], list[str]]:
    """(instruction in lower case, its `--flag=value`s by lower-case name, its other words)."""
    words = _WHITESPACE.split(line.strip())
    command, rest = words[0].lower(), words[1:]
    flags: dict[str, str] = {}
    while rest and rest[0].startswith("--"):
        flag, _, value = rest.pop(0)[2:].partition("=")
        flags[flag.lower()] = value
    return command, flags, rest
