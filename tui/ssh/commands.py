"""Commands without a terminal, Dokku style: `ssh acme@HOST apps`, `ssh acme@HOST scale web 3`.

Each becomes a `strata` CLI command run with the session's scoped token, so exit codes and messages are
the CLI's, and the API decides what the token may do.
"""

from dataclasses import dataclass

USAGE = """\
commands: apps | logs APP [-f] | scale APP REPLICAS | restart APP | events
          shell APP [INSTANCE] [-- COMMAND...]   (ssh -t for an interactive shell)
(an operator names the tenant: apps TENANT, logs TENANT/APP, scale TENANT/APP N, ...)
without a command, with a terminal (ssh -t): the console
"""


class UsageError(Exception):
    """Not a command this SSH server runs; the message is the usage."""


@dataclass(frozen=True)
class Shell:
    """`shell APP [INSTANCE] [-- COMMAND...]`: a command (a shell by default) in one of the app's containers."""

    tenant: str
    app: str
    instance: str | None
    command: list[str]


def shell_request(words: list[str], tenant: str | None) -> Shell | None:
    """The shell this SSH command asks for, or None if it is not `shell`."""
    if not words or words[0] != "shell":
        return None
    head, _, command = _split(words[1:])
    if not head or len(head) > 2:
        raise UsageError(USAGE)
    ref = head[0]
    if tenant is None:
        owner, slash, app = ref.partition("/")
        if not slash:
            raise UsageError(f"as an operator, name the app as TENANT/APP\n{USAGE}")
    elif "/" in ref:
        raise UsageError(f"name the app alone ({ref.split('/')[-1]}); you are {tenant}\n{USAGE}")
    else:
        owner, app = tenant, ref
    return Shell(owner, app, head[1] if len(head) == 2 else None, command or ["/bin/sh"])


def _split(words: list[str]) -> tuple[list[str], str, list[str]]:
    if "--" in words:
        index = words.index("--")
        return words[:index], "--", words[index + 1 :]
    return words, "", []


def cli_arguments(words: list[str], tenant: str | None) -> list[str]:
    """The `strata` arguments for an SSH command; `tenant` is the session's (None for an operator)."""
    if not words:
        raise UsageError(USAGE)
    verb, args = words[0], words[1:]

    def ref(app: str) -> str:
        if tenant is None:
            if "/" not in app:
                raise UsageError(f"as an operator, name the app as TENANT/APP\n{USAGE}")
            return app
        if "/" in app:
            raise UsageError(f"name the app alone ({app.split('/')[-1]}); you are {tenant}\n{USAGE}")
        return f"{tenant}/{app}"

    match verb, args:
        case "apps", []:
            return ["apps", "list", *([tenant] if tenant else [])]
        case "apps", [name] if tenant is None:
            return ["apps", "list", name]
        case "logs", [app]:
            return ["apps", "logs", ref(app)]
        case "logs", [app, "-f" | "--follow"]:
            return ["apps", "logs", ref(app), "--follow"]
        case "scale", [app, replicas] if replicas.isdigit():
            return ["apps", "scale", ref(app), replicas]
        case "restart", [app]:
            return ["apps", "restart", ref(app)]
        case "events", []:
            return ["events", *(["--tenant", tenant] if tenant else [])]
    raise UsageError(f"unknown command: {' '.join(words)}\n{USAGE}")
