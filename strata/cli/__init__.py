"""The `strata` command line."""

from strata.cli.main import main

__all__ = ["main"]
