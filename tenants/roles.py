"""What a tenant's member may do, by role: the one table the control API decides by, and the console reads to
offer only what the caller's role allows.

An operation is named as the API's OpenAPI schema names it: its method and path template (`WS` for a
WebSocket). Deny by default: an operation not listed here needs the owner, unless it is a read (GET), which a
viewer may do. Operators are not members: they act on every tenant, and some operations are theirs alone (the
API says so on the operation itself).
"""

from tenants.enums import MemberRole, may

Operation = tuple[str, str]  # (method, path template)

# The operations the console offers too, by name.
DEPLOY: Operation = ("PUT", "/tenants/{tenant}/apps/{app}")
SCALE: Operation = ("POST", "/tenants/{tenant}/apps/{app}/scale")
RESTART: Operation = ("POST", "/tenants/{tenant}/apps/{app}/restart")
DELETE_APP: Operation = ("DELETE", "/tenants/{tenant}/apps/{app}")
EXEC: Operation = ("WS", "/tenants/{tenant}/apps/{app}/instances/{instance}/exec")  # a shell or command in a container
DEPLOY_TEMPLATE: Operation = ("POST", "/tenants/{tenant}/catalog/{template}/deploy")

# Changes a developer may make: deploy, build, scale, restart, shell; volumes, services and backups, but no
# deletes of them, no members, no registries, no credentials.
DEVELOPER_CHANGES: frozenset[Operation] = frozenset(
    {
        DEPLOY,
        SCALE,
        RESTART,
        ("POST", "/tenants/{tenant}/apps/{app}/builds"),
        EXEC,
        DEPLOY_TEMPLATE,
        ("POST", "/tenants/{tenant}/volumes"),
        ("POST", "/tenants/{tenant}/volumes/{volume}/backups"),
        ("POST", "/tenants/{tenant}/backups/{backup}/restore"),
        ("POST", "/tenants/{tenant}/services"),
        ("POST", "/tenants/{tenant}/services/{service}/bindings"),
        ("DELETE", "/tenants/{tenant}/services/{service}/bindings/{app}"),
        ("POST", "/tenants/{tenant}/services/{service}/credentials/rotate"),
    }
)

READ = "GET"


def needed(method: str, path: str) -> MemberRole:
    """The least role that may do the operation."""
    if (method, path) in DEVELOPER_CHANGES:
        return MemberRole.DEVELOPER
    return MemberRole.VIEWER if method == READ else MemberRole.OWNER


def allows(role: MemberRole, method: str, path: str) -> bool:
    return may(role, needed(method, path))


def refusal(who: str, tenant: str, role: MemberRole, method: str, path: str, what: str) -> str:
    """Why `who` ("member 'ann' is", "you are"), `role` in `tenant`, may not do `what` (`method path`), in words."""
    return f"{who} {_a(role)} of {tenant!r}: {what} takes {_a(needed(method, path))}"


def _a(role: MemberRole) -> str:
    return f"an {role}" if role[0] in "aeiou" else f"a {role}"
