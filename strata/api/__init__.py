"""The control API served by the daemon; the CLI, the console and scripts all go through it."""

from strata.api.app import create_app

__all__ = ["create_app"]
