"""`/tenants/{tenant}/members`: the people of a tenant and their roles; `/whoami`: the caller's own. Which role
may do what is `tenants.roles`' table, applied to every operation by `deps.get_principal`."""

from fastapi import APIRouter, Response

from strata.api.deps import DB, Caller, TenantName
from tenants import members
from tenants.schemas import MemberCreate, MemberRead, MemberRoleSet, Whoami

router = APIRouter(tags=["members"])


@router.get("/whoami")
def whoami(principal: Caller) -> Whoami:
    """Who the token stands for, with the member's role as it is now (the console offers only what it allows)."""
    return Whoami(
        role=principal.role, tenant=principal.tenant, member=principal.member, member_role=principal.member_role
    )


@router.get("/tenants/{tenant}/members")
def list_members(session: DB, tenant: TenantName) -> list[MemberRead]:
    return members.list_members(session, tenant)


@router.post("/tenants/{tenant}/members", status_code=201)
def add_member(session: DB, principal: Caller, tenant: TenantName, body: MemberCreate) -> MemberRead:
    """A person of the tenant with a role; give them SSH keys and API tokens with `member` set."""
    return members.add_member(session, principal.actor, tenant, body)


@router.get("/tenants/{tenant}/members/{member}")
def get_member(session: DB, tenant: TenantName, member: str) -> MemberRead:
    return members.read_member(session, tenant, member)


@router.put("/tenants/{tenant}/members/{member}/role")
def set_role(session: DB, principal: Caller, tenant: TenantName, member: str, body: MemberRoleSet) -> MemberRead:
    """The member's keys and tokens act with the new role from their next request; its SSH sessions end."""
    return members.set_role(session, principal.actor, tenant, member, body.role)


@router.delete("/tenants/{tenant}/members/{member}", status_code=204)
def remove_member(session: DB, principal: Caller, tenant: TenantName, member: str) -> Response:
    """Remove the member with its keys and tokens: refused from now on; its SSH sessions end."""
    members.remove_member(session, principal.actor, tenant, member)
    return Response(status_code=204)
