"""What of an SSH command may be audited or logged: the value of an option meant for a secret never is. The real
SSH server's audit of such a command is `tests/ssh/test_ssh.py`'s."""

import logging

import asyncssh
import pytest

from tui.ssh.commands import REDACTED, redact
from tui.ssh.server import _RedactCommands


@pytest.mark.parametrize(
    ("command", "audited"),
    [
        ("registries add r -u me -p SECRET", f"registries add r -u me -p {REDACTED}"),
        ("registries add r -u me -pSECRET", f"registries add r -u me -p{REDACTED}"),
        ("registries add r --password SECRET -u me", f"registries add r --password {REDACTED} -u me"),
        ("registries add r -u me --password=SECRET", f"registries add r -u me --password={REDACTED}"),
        ("registries add r --password 'a SECRET' -u me", f"registries add r --password {REDACTED} -u me"),
        ("apps --token=SECRET", f"apps --token={REDACTED}"),
        ("x --registry-password SECRET", f"x --registry-password {REDACTED}"),
        ("registries add r -p 'SECRET unclosed", f"registries add r -p {REDACTED}"),
        ("shell web -- mysql -pSECRET", f"shell web -- mysql -p{REDACTED}"),
    ],
)
def test_a_secret_on_the_command_line_is_redacted(command: str, audited: str) -> None:
    assert redact(command) == audited


@pytest.mark.parametrize(
    "command",
    [
        "registries add r --username me --password-stdin",
        "logs web -f",
        "scale  web   2",
        "shell web -- sh -c 'echo \"hi\"'",
        "registries add r -u -p",
    ],
)
def test_a_command_without_a_secret_is_audited_as_typed(command: str) -> None:
    assert redact(command) == command


def test_asyncssh_logs_the_command_redacted(caplog: pytest.LogCaptureFixture) -> None:
    underlying = logging.getLogger("asyncssh")
    underlying.addFilter(redacting := _RedactCommands())
    try:
        with caplog.at_level(logging.INFO, logger="asyncssh"):
            channel = asyncssh.logging.logger.get_child(context="conn=0, chan=0")
            channel.info("  Command: %s", "registries add r -u me -p SECRET")  # as asyncssh's channel logs it
    finally:
        underlying.removeFilter(redacting)
    assert "SECRET" not in caplog.text and f"-p {REDACTED}" in caplog.text
