"""How an SSH command becomes a command in a container (`shell APP ...`, `psql SERVICE`) or a CLI command
(`usage`). What reaches the containers and the API of a real platform is `tests/ssh/test_ssh.py`'s."""

import shlex

import pytest

from tenants.services import DATABASE, USERNAME
from tui.ssh.commands import PSQL_COMMAND, Shell, UsageError, cli_arguments, shell_request

OPERATOR = None  # the session's tenant of an operator


def parsed(command: str, tenant: str | None) -> Shell | None:
    return shell_request(shlex.split(command), tenant)


def test_psql_opens_the_services_database_as_its_owning_role() -> None:
    assert parsed("psql db", "acme") == Shell("acme", "db", None, PSQL_COMMAND, service=True)
    env, role, history, psql, *database = PSQL_COMMAND
    assert (env, psql, database) == ("env", "psql", ["-d", DATABASE])
    assert role == f"PGOPTIONS=-c role={USERNAME}"  # what it creates belongs to the bound apps' role
    assert history == "PSQL_HISTORY=/dev/null"  # the container's root is read-only


def test_an_operator_names_the_services_tenant() -> None:
    assert parsed("psql acme/db", OPERATOR) == Shell("acme", "db", None, PSQL_COMMAND, service=True)


@pytest.mark.parametrize(
    ("command", "tenant", "said"),
    [
        ("psql", "acme", "psql takes the service's name alone: psql SERVICE"),
        ("psql db extra", "acme", "psql takes the service's name alone: psql SERVICE"),
        ("psql db -- sh", "acme", "psql takes the service's name alone: psql SERVICE"),
        ("psql", OPERATOR, "psql takes the service's name alone: psql TENANT/SERVICE"),
        ("psql other/db", "acme", "name the service alone (db); you are acme"),
        ("psql db", OPERATOR, "as an operator, name the service as TENANT/SERVICE"),
        ("psql acme/", OPERATOR, "as an operator, name the service as TENANT/SERVICE"),
        ("psql /db", OPERATOR, "as an operator, name the service as TENANT/SERVICE"),
    ],
)
def test_a_psql_that_names_no_one_service_is_refused_with_the_usage(
    command: str, tenant: str | None, said: str
) -> None:
    with pytest.raises(UsageError) as refused:
        parsed(command, tenant)
    assert str(refused.value).startswith(f"{said}\n") and "psql SERVICE" in str(refused.value)


@pytest.mark.parametrize(
    ("command", "tenant", "shell"),
    [
        ("shell web", "acme", Shell("acme", "web", None, ["/bin/sh"])),
        ("shell web 3f2a", "acme", Shell("acme", "web", "3f2a", ["/bin/sh"])),
        ("shell web -- cat /etc/hostname", "acme", Shell("acme", "web", None, ["cat", "/etc/hostname"])),
        ("shell acme/web -- psql", OPERATOR, Shell("acme", "web", None, ["psql"])),
    ],
)
def test_a_shell_runs_its_command_in_an_app_that_need_not_be_a_service(
    command: str, tenant: str | None, shell: Shell
) -> None:
    assert parsed(command, tenant) == shell and not shell.service


@pytest.mark.parametrize(
    ("command", "tenant", "said"),
    [
        ("shell", "acme", "commands:"),
        ("shell other/web", "acme", "name the app alone (web); you are acme"),
        ("shell web", OPERATOR, "as an operator, name the app as TENANT/APP"),
    ],
)
def test_a_shell_that_names_no_app_is_refused_with_the_usage(command: str, tenant: str | None, said: str) -> None:
    with pytest.raises(UsageError) as refused:
        parsed(command, tenant)
    assert str(refused.value).startswith(said)


@pytest.mark.parametrize("command", ["apps", "logs db -f", "psqlx db", ""])
def test_other_commands_are_no_shells(command: str) -> None:
    assert parsed(command, "acme") is None


@pytest.mark.parametrize(
    ("command", "tenant", "arguments"),
    [
        ("usage", "acme", ["usage", "--tenant", "acme"]),
        ("usage --since 2026-12-01 --csv", "acme", ["usage", "--tenant", "acme", "--since", "2026-12-01", "--csv"]),
        ("usage --tenant=acme --json", "acme", ["usage", "--tenant", "acme", "--json"]),
        ("usage", OPERATOR, ["usage"]),
        ("usage acme --since=2026-11-01", OPERATOR, ["usage", "--tenant", "acme", "--since", "2026-11-01"]),
        ("usage --tenant acme --json", OPERATOR, ["usage", "--tenant", "acme", "--json"]),
    ],
)
def test_usage_is_the_sessions_tenants_or_the_one_an_operator_names(
    command: str, tenant: str | None, arguments: list[str]
) -> None:
    assert cli_arguments(shlex.split(command), tenant) == arguments


@pytest.mark.parametrize(
    ("command", "tenant", "said"),
    [
        ("usage --tenant other", "acme", "your usage is acme's alone"),
        ("usage other", "acme", "unknown command: usage other"),
        ("usage --since", "acme", "--since takes a value"),
        ("usage --tenant=", OPERATOR, "--tenant takes a value"),
        ("usage --verbose", OPERATOR, "unknown command: usage --verbose"),
        ("usage acme --tenant other", OPERATOR, "name one tenant"),
    ],
)
def test_a_usage_of_another_tenant_or_an_unknown_option_is_refused(command: str, tenant: str | None, said: str) -> None:
    with pytest.raises(UsageError) as refused:
        cli_arguments(shlex.split(command), tenant)
    assert str(refused.value).startswith(said) and "usage [--since YYYY-MM-DD]" in str(refused.value)
