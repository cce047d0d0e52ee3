"""Domain errors: each one a value the user can act on (the API maps them to status codes)."""


class DomainError(Exception):
    """Base of the errors the service layer raises; `code` is stable, `message` is for people."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Invalid(DomainError, ValueError):
    """The input breaks a rule (a name, a range); `field` names the offending field.

    A ValueError too, so pydantic validators may raise it and report it against their field."""

    code = "invalid"


class NotFound(DomainError):
    """No such resource — or one the caller may not see, which must look the same."""

    code = "not_found"


class Conflict(DomainError):
    """The resource exists already, or its state forbids the change (e.g. a suspended tenant)."""

    code = "conflict"


class QuotaExceeded(DomainError):
    """The change would take the tenant past its plan; the message names the quota and the numbers."""

    code = "quota_exceeded"


class Busy(DomainError):
    """Too much of the kind runs at once (builds, say): try again once one ends."""

    code = "busy"


class Unavailable(DomainError):
    """Something the request needs (the build engine, disk space) is not available now; nothing was changed."""

    code = "unavailable"


class Forbidden(DomainError):
    """The caller is known but its role may not do this."""

    code = "forbidden"
