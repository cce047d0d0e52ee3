"""How the CLI prints: aligned plain-text tables for people, `--json` for scripts, errors on stderr."""

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click
from pydantic import BaseModel

Column = tuple[str, Callable[[Any], object]]


def emit_json(value: BaseModel | Sequence[BaseModel]) -> None:
    data = (
        [item.model_dump(mode="json") for item in value]
        if isinstance(value, Sequence)
        else value.model_dump(mode="json")
    )
    click.echo(json.dumps(data, indent=2))


def table(rows: Iterable[Any], columns: Sequence[Column], *, empty: str = "nothing yet") -> None:
    """Print `rows` under upper-case headers, columns padded to their widest cell."""
    cells = [[_text(get(row)) for _, get in columns] for row in rows]
    if not cells:
        click.echo(empty, err=True)
        return
    headers = [name.upper() for name, _ in columns]
    widths = [max(len(line[i]) for line in [headers, *cells]) for i in range(len(columns))]
    for line in [headers, *cells]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)).rstrip())


def fields(pairs: Sequence[tuple[str, object]]) -> None:
    """Print `name: value` lines, names aligned (the `show` verbs)."""
    width = max(len(name) for name, _ in pairs)
    for name, value in pairs:
        click.echo(f"{name + ':':<{width + 1}} {_text(value)}")


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "-"
    if isinstance(value, dict):
        return " ".join(f"{key}={item}" for key, item in value.items()) or "-"
    if hasattr(value, "isoformat"):
        return value.isoformat(timespec="seconds")
    return str(value)
