"""The platform's enumerations, apart from the tables so the API client can use them without SQLAlchemy."""

from enum import StrEnum


class Isolation(StrEnum):
    SHARED = "shared"  # containers share node kernels with other tenants
    DEDICATED = "dedicated"  # containers only on VMs of this tenant


class TenantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class Role(StrEnum):
    OPERATOR = "operator"
    TENANT = "tenant"
