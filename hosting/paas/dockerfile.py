r"""The images a Dockerfile names, read as the engine's legacy builder reads it, so that a build is checked
before it starts: the engine resolves `FROM` and `COPY --from=` against any image it holds, whoever's.

The reading follows moby's parser (the one Docker 20.10 vendors, buildkit v0.8's `frontend/dockerfile/parser`):
comment lines anywhere (also inside a continued instruction), empty continuation lines, case-insensitive
instructions, `--flag=value` words before the arguments. What it would read otherwise than Python does is
refused first: a control character but tab, CR and LF, or a space other than ASCII's (Go's `unicode.IsSpace`,
its regexps' `\s` and Python's `str.isspace` each count other characters as whitespace); text that is not
UTF-8 (the engine reads bytes; `build_context` refuses it). Of parser directives only `# escape=` (`\` or a
backtick) on the very first line is read; anywhere else it is refused, since whether the engine reads it there
depends on the lines above it (and on the engine's version). A line continuation is the escape character at
the end of a line (spaces and tabs after it aside) unless another escape character precedes it, as the engine
reads it. `FROM [--platform=..] IMAGE [AS name]`
names an image unless IMAGE is an earlier stage or `scratch`; `COPY --from=X` unless X is an earlier stage (by
name or index). `ONBUILD COPY --from=X` runs in a later build (a later stage's, or a child image's), where what
X means is not known here: it is taken as an image always. Whatever the engine would read otherwise than as
written here (quotes, escapes, variables) is refused rather than guessed.
"""

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from tenants.errors import Invalid

SCRATCH = "scratch"
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")  # no quotes, escapes or variables
_ESCAPES = ("\\", "`")
_WEIRD_FLAG = re.compile(r"[\"'\\]|[^\x00-\x7f]")  # the engine unquotes and unescapes flags, byte by byte
NO_VARIABLES = "name the image: FROM with build arguments is not supported"


@dataclass(frozen=True)
class NamedImage:
    """An image a Dockerfile builds from or copies from: `instruction` (`FROM`, `COPY --from`) at `line`."""

    instruction: str
    name: str
    line: int

    def describe(self) -> str:
        return f"{self.instruction} {self.name}" if self.instruction == "FROM" else f"{self.instruction}={self.name}"


def check_text(text: str) -> None:
    """`Invalid`, naming the line, if `text` holds a character the engine's parser and this module might read
    differently: a control character but tab, CR and LF, or a space other than ASCII's."""
    for index, char in enumerate(text):
        category = unicodedata.category(char)
        if (category == "Cc" and char not in "\t\n\r") or (category in ("Zs", "Zl", "Zp") and char != " "):
            number = text.count("\n", 0, index) + 1
            raise Invalid(
                f"Dockerfile line {number}: the character U+{ord(char):04X} is not supported: "
                "use only spaces, tabs and line breaks as whitespace, and no control characters",
                field="context",
            )


def instructions(text: str) -> Iterator[tuple[int, str]]:
    """(line number, the whole instruction) of each instruction, continuations joined and comments dropped."""
    text = text.removeprefix("\ufeff")
    check_text(text)
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    escape, index = "\\", 0
    while index < len(lines):
        line = lines[index].lstrip()
        index += 1
        number = index
        directive = _DIRECTIVE.match(line)
        if directive is not None and directive.group(1).lower() == "escape":
            if number != 1:
                raise Invalid(
                    f"Dockerfile line {number}: parser directives other than a first-line escape are not "
                    "supported: put `# escape=` on the very first line",
                    field="context",
                )
            escape = directive.group(2)
            if escape not in _ESCAPES:
                raise Invalid(f"Dockerfile line {number}: invalid escape token {escape!r}", field="context")
        if line.startswith("#"):
            continue
        line, continued = _continued(line, escape)
        if not continued and not line:
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
        command, flags, args = _split(number, line)
        if command == "onbuild" and args:
            command, flags, args = _split(number, " ".join(args))
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
    """The images an image's ONBUILD triggers copy from (they run in the build of an image FROM it, each parsed
    on its own as a Dockerfile of one instruction); `Invalid` for a trigger that is not one line."""
    named: list[NamedImage] = []
    for trigger in triggers:
        if "\r" in trigger or "\n" in trigger or trigger.rstrip(" \t").endswith(_ESCAPES):
            raise Invalid(f"ONBUILD trigger {trigger!r}: not a single line", field="context")
        named += named_images(f"ONBUILD {trigger}")
    return named


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
    """The line without its continuation character, and whether it had one: the engine's rule, under which an
    escape character after another (`\\\\` at the end) is no continuation."""
    found = re.search(rf"([^{re.escape(escape)}]){re.escape(escape)}[ \t]*$|^{re.escape(escape)}[ \t]*$", line)
    return (line[: found.end(1)] if found.group(1) else "", True) if found else (line, False)


def _split(number: int, line: str) -> tuple[str, dict[str, str], list[str]]:
    """(instruction in lower case, its `--flag=value`s by lower-case name, its other words)."""
    words = _WHITESPACE.split(line.strip())
    command, rest = words[0].lower(), words[1:]
    flags: dict[str, str] = {}
    while rest and rest[0].startswith("--"):
        if _WEIRD_FLAG.search(rest[0]):
            raise Invalid(
                f"Dockerfile line {number}: {rest[0]}: quotes, backslashes and non-ASCII characters in flags are "
                "not supported",
                field="context",
            )
        flag, _, value = rest.pop(0)[2:].partition("=")
        flags[flag.lower()] = value
    return command, flags, rest
