"""`python -m tui`: the console for an SSH session (the token comes from STRATA_TOKEN, the API from STRATA_HOME)."""

import os
from pathlib import Path

from tenants.client import StrataClient
from tui import ConsoleData, StrataConsole

home = Path(os.environ["STRATA_HOME"])
with StrataClient(socket=home / "api.sock", token=os.environ["STRATA_TOKEN"]) as client:
    StrataConsole(ConsoleData(client)).run()
