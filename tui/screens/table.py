"""A table that fits its width: it shows the columns that fit, the most important first, and says which it
hides. A plain DataTable cuts them silently instead, scrolling sideways behind a scrollbar mid-pane."""

from collections.abc import Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from tui.model import Column, fill, fit

Rows = Sequence[tuple[str, Sequence[object]]]


def width(cell: object) -> int:
    """Cells a value takes; cells are plain strings or `Text` (never markup, which user data could break)."""
    return cell.cell_len if isinstance(cell, Text) else cell_len(str(cell))


class FittingTable(DataTable[object]):
    """A row-cursor table of `columns`; `show(rows)` paints full rows (key, a cell per column), of which only
    the fitting columns are shown. `Fitted` tells the screen which are hidden, each time that changes."""

    DEFAULT_CSS = "FittingTable { overflow-x: hidden; scrollbar-size-vertical: 1; }"

    class Fitted(Message):
        def __init__(self, table: "FittingTable", hidden: list[str]) -> None:
            super().__init__()
            self.table, self.hidden = table, hidden

    def __init__(self, columns: Sequence[Column], *, id: str) -> None:  # noqa: A002 (Textual's name)
        super().__init__(id=id, cursor_type="row")
        self.spec = list(columns)
        self.rows_shown: list[tuple[str, list[object]]] = []
        self.kept: list[int] | None = None

    def show(self, rows: Rows) -> None:
        self.rows_shown = [(key, list(cells)) for key, cells in rows]
        self.refit()

    def set_cell(self, row: str, label: str, value: object) -> None:
        """Change one cell (shown or not), without repainting the table."""
        index = next(i for i, column in enumerate(self.spec) if column.label == label)
        for key, cells in self.rows_shown:
            if key == row:
                cells[index] = value
        if self.kept is not None and index in self.kept:
            self.update_cell(row, str(index), value)

    def on_resize(self) -> None:
        self.refit()

    def refit(self) -> None:
        padding = 2 * self.cell_padding
        widths = [
            max([column.width, width(column.label), *(width(cells[index]) for _, cells in self.rows_shown)]) + padding
            for index, column in enumerate(self.spec)
        ]
        overflows = len(self.rows_shown) + 1 > self.size.height  # a vertical scrollbar will take its share
        room = self.size.width - (self.styles.scrollbar_size_vertical if overflows else 0)
        empty = {i for i, c in enumerate(self.spec) if c.sparse and not any(str(r[i]) for _, r in self.rows_shown)}
        widths = [0 if index in empty else size for index, size in enumerate(widths)]
        kept = [index for index in fit(self.spec, widths, room) if index not in empty]
        if kept != self.kept:
            self.kept = kept
            self.clear(columns=True)
            for index in kept:
                self.add_column(self.spec[index].label, key=str(index))
            hidden = [
                column.label for index, column in enumerate(self.spec) if index not in kept and index not in empty
            ]
            self.post_message(self.Fitted(self, hidden))
        fill(self, [(key, [cells[index] for index in kept]) for key, cells in self.rows_shown])
