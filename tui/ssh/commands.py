"""Commands without a terminal, Dokku style: `ssh acme@HOST apps`, `ssh acme@HOST scale web 3`.

Each becomes a `strata` CLI command run with the session's scoped token, so exit codes and messages are
the CLI's, and the API decides what the token may do.
"""

import re
import shlex
from dataclasses import dataclass, field

from tenants.services import DATABASE, USERNAME

USAGE = """\
commands: apps | logs APP [-f] | scale APP REPLICAS | restart APP | events | builds [APP] | builds log ID
          images | registries | registries add REGISTRY --username U --password-stdin | registries remove REGISTRY
          usage [--since YYYY-MM-DD] [--json | --csv]
          shell APP [INSTANCE] [-- COMMAND...]   (ssh -t for an interactive shell)
          psql SERVICE   (a managed PostgreSQL: ssh -t for a prompt, or a script on stdin)
git push ssh://TENANT@HOST:PORT/APP main builds and deploys; git clone reads what was pushed
(an operator names the tenant: apps TENANT, logs TENANT/APP, psql TENANT/SERVICE, usage [TENANT], ...)
without a command, with a terminal (ssh -t): the console
"""


REDACTED = "[redacted]"
# An option whose value is a secret: the CLI's `-p`/`--password` (refused, but typed all the same), and any long
# option named for one (`--token`, `--registry-password`, `--api-key`, ...); not a flag such as --password-stdin.
_SECRET_LONG = re.compile(r"--(?:[a-z0-9]+-)*(?:password|passwd|pass|secret|token|api-key|apikey)", re.IGNORECASE)


def redact(command: str) -> str:
    """The SSH command as it may be audited or logged: the value of any option meant for a secret replaced
    (`-p SECRET`, `-pSECRET`, `--password SECRET`, `--password=SECRET`, `--token ...`), the rest as typed. A
    command that does not parse as words (an open quote) is cut after its first secret option."""
    try:
        words = shlex.split(command)
    except ValueError:
        for found in re.finditer(r"\S+", command):
            option = _secret_option(found.group())
            if option is not None:
                return f"{command[: found.start()]}{option} {REDACTED}"
        return command
    shown, hide, redacted = [], False, False
    for word in words:
        option = _secret_option(word)
        if hide:
            shown.append(REDACTED)
            hide, redacted = False, True
        elif option is None:
            shown.append(shlex.quote(word))
        elif option == word:
            shown.append(shlex.quote(word))
            hide = True  # its value is the next word
        else:
            shown.append(f"{shlex.quote(option)}{REDACTED}")
            redacted = True
    return " ".join(shown) if redacted else command


def _secret_option(word: str) -> str | None:
    """The option part of a word that is a secret option (`-p`, `--password`) or carries one's value
    (`-pSECRET` -> `-p`, `--password=SECRET` -> `--password=`); None for any other word."""
    if _is_secret_option(word):
        return word
    if word.startswith("-p") and not word.startswith("--"):
        return "-p"  # -pSECRET, as click reads it
    option, equals, _ = word.partition("=")
    if equals and option.startswith("--") and _is_secret_option(option):
        return f"{option}="
    return None


def _is_secret_option(word: str) -> bool:
    return word == "-p" or _SECRET_LONG.fullmatch(word) is not None


class UsageError(Exception):
    """Not a command this SSH server runs; the message is the usage."""


# psql in a managed PostgreSQL's container: over its socket as the superuser postgres (the container's user, by
# `peer`), acting as the role that owns the database, so that what it creates is the bound apps' own. No history
# file: the container's root is read-only, and psql would complain at each exit that it cannot save one.
PSQL_COMMAND = ["env", f"PGOPTIONS=-c role={USERNAME}", "PSQL_HISTORY=/dev/null", "psql", "-d", DATABASE]


@dataclass(frozen=True)
class Shell:
    """A command (a shell by default) in one of the app's containers: `shell APP [INSTANCE] [-- COMMAND...]`, or
    `psql SERVICE`, psql in the container of one of the tenant's managed services (`service`: the app must be one,
    which the API is asked before anything runs)."""

    tenant: str
    app: str
    instance: str | None
    command: list[str]
    service: bool = field(default=False, kw_only=True)


def shell_request(words: list[str], tenant: str | None) -> Shell | None:
    """The shell this SSH command asks for (`shell ...` or `psql ...`), or None if it is neither."""
    if words[:1] == ["psql"]:
        return _psql(words[1:], tenant)
    if not words or words[0] != "shell":
        return None
    head, _, command = _split(words[1:])
    if not head or len(head) > 2:
        raise UsageError(USAGE)
    owner, app = _owner_and_name(head[0], tenant, "app", "APP")
    return Shell(owner, app, head[1] if len(head) == 2 else None, command or ["/bin/sh"])


def _psql(args: list[str], tenant: str | None) -> Shell:
    """`psql SERVICE` (an operator: `psql TENANT/SERVICE`), nothing more: the service's database, as its role."""
    if len(args) != 1:
        named = "TENANT/SERVICE" if tenant is None else "SERVICE"
        raise UsageError(f"psql takes the service's name alone: psql {named}\n{USAGE}")
    owner, service = _owner_and_name(args[0], tenant, "service", "SERVICE")
    return Shell(owner, service, None, list(PSQL_COMMAND), service=True)


def _owner_and_name(ref: str, tenant: str | None, what: str, placeholder: str) -> tuple[str, str]:
    """(TENANT, NAME) of what an SSH command names: `NAME` in a tenant's session, `TENANT/NAME` in an operator's."""
    if tenant is None:
        owner, slash, name = ref.partition("/")
        if not slash or not owner or not name:
            raise UsageError(f"as an operator, name the {what} as TENANT/{placeholder}\n{USAGE}")
        return owner, name
    if "/" in ref:
        raise UsageError(f"name the {what} alone ({ref.split('/')[-1]}); you are {tenant}\n{USAGE}")
    return tenant, ref


def _split(words: list[str]) -> tuple[list[str], str, list[str]]:
    if "--" in words:
        index = words.index("--")
        return words[:index], "--", words[index + 1 :]
    return words, "", []


def _owned(args: list[str], tenant: str | None) -> list[str]:
    """TENANT REGISTRY: the session's tenant, or the one an operator names first."""
    if tenant is None:
        if len(args) < 2:
            raise UsageError(f"as an operator, name the tenant: registries add TENANT REGISTRY ...\n{USAGE}")
        return args[:2]
    return [tenant, args[0]]


def _login_options(args: list[str]) -> list[str]:
    """REGISTRY --username U --password-stdin, in any order of the options; no password on the command line."""
    options = args[1:]
    match options:
        case ["--username" | "-u", user, "--password-stdin"] | ["--password-stdin", "--username" | "-u", user]:
            return ["--username", user, "--password-stdin"]
    raise UsageError(f"give the password on stdin: registries add REGISTRY --username U --password-stdin\n{USAGE}")


def _usage(args: list[str], tenant: str | None) -> list[str]:
    """`usage [TENANT] [--tenant T] [--since DAY] [--json | --csv]` as the CLI's `usage`: a tenant's session its
    own tenant's (naming another is refused, as everywhere), an operator's every tenant's or the one named."""
    named: list[str] = []
    options: list[str] = []
    words = iter(args)
    for word in words:
        option, equals, value = word.partition("=")
        if option in ("--since", "--tenant"):
            value = value if equals else next(words, "")
            if not value:
                raise UsageError(f"{option} takes a value\n{USAGE}")
        if option == "--since":
            options += ["--since", value]
        elif word in ("--json", "--csv"):
            options.append(word)
        elif option == "--tenant":
            named.append(value)
        elif not word.startswith("-") and tenant is None:
            named.append(word)  # an operator's `usage TENANT`, as `apps TENANT`
        else:
            raise UsageError(f"unknown command: usage {' '.join(args)}\n{USAGE}")
    if len(named) > 1:
        raise UsageError(f"name one tenant: usage TENANT\n{USAGE}")
    if tenant is not None:
        if named and named[0] != tenant:
            raise UsageError(f"your usage is {tenant}'s alone: usage without --tenant\n{USAGE}")
        named = [tenant]
    return ["usage", *(["--tenant", *named] if named else []), *options]


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
        case "images", []:
            return ["images", "list", *([tenant] if tenant else [])]
        case "images", [owner] if tenant is None:
            return ["images", "list", owner]
        case "registries", []:
            return ["registries", "list", *([tenant] if tenant else [])]
        case "registries", [owner] if tenant is None:
            return ["registries", "list", owner]
        case "registries", ["add", *rest] if rest:
            return ["registries", "add", *_owned(rest, tenant), *_login_options(rest[1 if tenant is None else 0 :])]
        case "registries", ["remove", *rest] if len(rest) == (2 if tenant is None else 1):
            return ["registries", "remove", *_owned(rest, tenant)]
        case "builds", []:
            return ["builds", "list", *([tenant] if tenant else [])]
        case "builds", ["log", build_id] if build_id.isdigit():
            if tenant is None:
                raise UsageError(f"as an operator: builds log TENANT ID\n{USAGE}")
            return ["builds", "log", tenant, build_id]
        case "builds", ["log", owner, build_id] if tenant is None and build_id.isdigit():
            return ["builds", "log", owner, build_id]
        case "builds", [name] if tenant is None and "/" not in name:
            return ["builds", "list", name]
        case "builds", [app]:
            owner, _, name = ref(app).partition("/")
            return ["builds", "list", owner, "--app", name]
        case "usage", _:
            return _usage(args, tenant)
    raise UsageError(f"unknown command: {' '.join(words)}\n{USAGE}")
