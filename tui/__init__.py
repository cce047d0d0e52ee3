"""The Textual console, and serving it (and tenant shells) over SSH. A pure client of the control API:
it never opens the database or Docker, so it shows exactly what its token may see."""

from tui.app import StrataConsole
from tui.dao import ConsoleData

__all__ = ["ConsoleData", "StrataConsole"]
