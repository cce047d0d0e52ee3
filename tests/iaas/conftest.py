"""The VM tests report how long their VMs took to boot, at the end of the run (pytest's terminal summary)."""

from collections.abc import Callable

import pytest

_REPORTED: list[str] = []


@pytest.fixture
def report() -> Callable[[str], None]:
    """Add a line to the run's "VM timings" section."""
    return _REPORTED.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _REPORTED:
        terminalreporter.section("VM timings")
        for line in _REPORTED:
            terminalreporter.write_line(line)
