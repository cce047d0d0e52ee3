"""Table models: which rows the console shows, in which order, and what it remembers between refreshes."""

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

Row = TypeVar("Row")

HISTORY_POINTS = 60  # one per refresh: two minutes at the 2 s poll


def visible(rows: Iterable[Row], text: str, key: Callable[[Row], str]) -> list[Row]:
    """The rows whose key contains every word of the filter `text` (case-insensitive)."""
    words = text.lower().split()
    return [row for row in rows if all(word in key(row).lower() for word in words)]


def ordered(rows: Sequence[Row], sort_key: Callable[[Row], object] | None, reverse: bool) -> list[Row]:
    return sorted(rows, key=sort_key, reverse=reverse) if sort_key else list(rows)  # type: ignore[arg-type]


class History:
    """The last figures of each series (an app's req/s), for sparklines."""

    def __init__(self, points: int = HISTORY_POINTS) -> None:
        self._series: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=points))

    def add(self, name: str, value: float) -> None:
        self._series[name].append(value)

    def of(self, name: str) -> list[float]:
        return list(self._series.get(name, ()))
