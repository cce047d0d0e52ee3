"""The short soak of `bench/soak.py`: keep-alive load through the gateway over apps of two tenants while they
are scaled and redeployed; not one request may fail, and the daemon's memory stays bounded."""

import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


@pytest.mark.timeout(300)
def test_a_short_soak_loses_no_request() -> None:
    run = subprocess.run(
        [sys.executable, str(SOAK), "--seconds", "10", "--connections", "100", "--apps", "4", "--tenants", "2",
         "--max-rss-mib", "400"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert ", failed 0" in run.stdout and "churn: " in run.stdout
