"""Table models: which rows the console shows, in which order, and what it remembers between refreshes."""

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from textual.widgets import DataTable

if TYPE_CHECKING:
    from _typeshed import SupportsRichComparison

Row = TypeVar("Row")

HISTORY_POINTS = 60  # one per refresh: two minutes at the 2 s poll


def visible(rows: Iterable[Row], text: str, key: Callable[[Row], str]) -> list[Row]:
    """The rows whose key contains every word of the filter `text` (case-insensitive)."""
    words = text.lower().split()
    return [row for row in rows if all(word in key(row).lower() for word in words)]


def ordered(
    rows: Sequence[Row], sort_key: "Callable[[Row], SupportsRichComparison] | None", reverse: bool
) -> list[Row]:
    return sorted(rows, key=sort_key, reverse=reverse) if sort_key else list(rows)


@dataclass(frozen=True)
class Column:
    """A table column; the lower its `priority`, the longer it stays when the table is too narrow for all.
    `width` reserves room for cells that grow (a sparkline), so the column does not come and go as they do;
    a `sparse` column (a reason) takes room only while some row has something in it."""

    label: str
    priority: int
    width: int = 0
    sparse: bool = False


def fit(columns: Sequence[Column], widths: Sequence[int], room: int) -> list[int]:
    """The indices (in table order) of the columns to show in `room` cells, given each one's `widths`: taken by
    priority, each while it still fits, so the least important go first (a wide one may give way to a narrower,
    less important one). The most important always stays, so no table is ever empty."""
    kept: list[int] = []
    used = 0
    for index in sorted(range(len(columns)), key=lambda i: columns[i].priority):
        if not kept or used + widths[index] <= room:
            kept.append(index)
            used += widths[index]
    return sorted(kept)


class History:
    """The last figures of each series (an app's req/s), for sparklines."""

    def __init__(self, points: int = HISTORY_POINTS) -> None:
        self._series: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=points))

    def add(self, name: str, value: float) -> None:
        self._series[name].append(value)

    def of(self, name: str) -> list[float]:
        return list(self._series.get(name, ()))


def fill(table: DataTable[Any], rows: Sequence[tuple[str, Sequence[object]]]) -> None:
    """Make `table` show `rows` (key, cells), keeping the cursor on its row. When the keys are the same as
    shown, only changed cells are touched: a refresh of 1,000 unchanged tenants costs next to nothing."""
    current = [str(key.value) for key in table.rows]
    if current == [key for key, _ in rows]:
        columns = [column.key for column in table.ordered_columns]
        for index, (key, values) in enumerate(rows):
            old = table.get_row_at(index)
            for column, value, before in zip(columns, values, old, strict=True):
                if str(value) != str(before):
                    table.update_cell(key, column, value)
        return
    selected = current[table.cursor_row] if current and 0 <= table.cursor_row < len(current) else None
    table.clear()
    for key, values in rows:
        table.add_row(*values, key=key)
    if selected is not None:
        keys = [key for key, _ in rows]
        if selected in keys:
            table.move_cursor(row=keys.index(selected))
