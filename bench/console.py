"""Console responsiveness: time to first paint of the overview, of one refresh, and of a filter (`/` and a
name's prefix that a tenth of them have) for 10, 100 and 1,000 tenants (10 apps each), headless.

    .venv/bin/python bench/console.py

The API data comes from `tui.synthetic.SyntheticData`, a stand-in for the daemon clearly named as such, so the
figures are the console's own (modelling, painting) and not the daemon's. Each refresh changes every tenant's
traffic figures, so every row really repaints.
"""

import asyncio
import statistics
import time

from textual.widgets import DataTable

from tui.app import StrataConsole
from tui.screens.overview import OverviewScreen
from tui.synthetic import SyntheticData

REFRESHES = 5


async def measure(tenants: int) -> tuple[float, float, float]:
    data = SyntheticData(tenants)
    app = StrataConsole(data, refresh_seconds=3600)  # type: ignore[arg-type]
    started = time.perf_counter()
    async with app.run_test(size=(160, 50)) as pilot:
        while not (isinstance(app.screen, OverviewScreen) and app.screen.query_one(DataTable).row_count == tenants):
            await pilot.pause(0.005)
        first_paint = time.perf_counter() - started
        screen = app.screen
        refreshes = []
        for _ in range(REFRESHES):
            data.tick()
            payload = data.overview()
            started = time.perf_counter()
            screen.show((payload, []))
            await pilot.pause()  # let it render
            refreshes.append(time.perf_counter() - started)
        started, wanted = time.perf_counter(), max(1, tenants // 10)
        await pilot.press("slash", *"tenant-" + "0" * (6 - len(str(tenants))), "enter")  # tenant-00: 0000-0099
        while screen.query_one(DataTable).row_count != wanted:
            await pilot.pause(0.005)
        filtered = time.perf_counter() - started
    return first_paint, statistics.median(refreshes), filtered


def main() -> None:
    print(f"{'tenants':>8} {'first paint':>12} {'one refresh':>12} {'filter':>10}")
    for tenants in (10, 100, 1000):
        first, refresh, filtered = asyncio.run(measure(tenants))
        print(f"{tenants:>8} {first * 1000:>10.0f}ms {refresh * 1000:>10.0f}ms {filtered * 1000:>8.0f}ms")


if __name__ == "__main__":
    main()
