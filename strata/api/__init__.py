"""The control API served by the daemon; the CLI, the console and scripts all go through it."""

from strata.api.app import create_app
from strata.api.deps import Platform

__all__ = ["Platform", "create_app"]
