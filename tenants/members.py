"""Members of a tenant: people with a role there (`tenants.roles` says what each may do), each with SSH keys and
API tokens of their own that act with the member's role as it is now. A role changed takes effect at the next
request; a member removed takes its keys and tokens along (the database cascades), so they fail at once."""

from sqlmodel import Session, col, func, select

from tenants import audit
from tenants.db import commit
from tenants.enums import MemberRole
from tenants.errors import Invalid, NotFound
from tenants.models import ApiToken, Member, SshKey, Tenant, saved_id
from tenants.schemas import MemberCreate, MemberRead
from tenants.tenancy import get_tenant


def add_member(session: Session, actor: str, tenant_name: str, spec: MemberCreate) -> MemberRead:
    tenant = get_tenant(session, tenant_name)
    member = Member(tenant_id=saved_id(tenant), name=spec.name, role=spec.role)
    session.add(member)
    audit.record(session, actor, "member.add", tenant.name, member=spec.name, role=spec.role)
    commit(session, conflict=f"tenant {tenant.name!r} has a member named {spec.name!r} already")
    return _read(session, member, tenant)


def list_members(session: Session, tenant_name: str) -> list[MemberRead]:
    tenant = get_tenant(session, tenant_name)
    rows = session.exec(select(Member).where(Member.tenant_id == tenant.id).order_by(col(Member.name)))
    return [_read(session, member, tenant) for member in rows]


def get_member(session: Session, tenant: Tenant, name: str) -> Member:
    member = session.exec(select(Member).where(Member.tenant_id == tenant.id, Member.name == name)).first()
    if member is None:
        raise NotFound(f"tenant {tenant.name!r} has no member named {name!r}", field="member")
    return member


def read_member(session: Session, tenant_name: str, name: str) -> MemberRead:
    tenant = get_tenant(session, tenant_name)
    return _read(session, get_member(session, tenant, name), tenant)


def set_role(session: Session, actor: str, tenant_name: str, name: str, role: MemberRole) -> MemberRead:
    """The member's keys and tokens act with `role` from their next use on."""
    tenant = get_tenant(session, tenant_name)
    member = get_member(session, tenant, name)
    was, member.role = member.role, role
    audit.record(session, actor, "member.role", tenant.name, member=name, role=role, was=was)
    session.commit()
    return _read(session, member, tenant)


def remove_member(session: Session, actor: str, tenant_name: str, name: str) -> None:
    """Remove the member with its keys and tokens: none of them is accepted from now on."""
    tenant = get_tenant(session, tenant_name)
    member = get_member(session, tenant, name)
    keys, tokens = _counts(session, member)
    session.delete(member)
    audit.record(session, actor, "member.remove", tenant.name, member=name, keys=keys, tokens=tokens)
    session.commit()


def member_id(session: Session, tenant: Tenant | None, name: str | None) -> int | None:
    """The id of a credential's member, for a tenant's credential naming one; `NotFound` if it has none so named."""
    if name is None:
        return None
    if tenant is None:
        raise Invalid("an operator's credential belongs to no member; leave out 'member'", field="member")
    return saved_id(get_member(session, tenant, name))


def _counts(session: Session, member: Member) -> tuple[int, int]:
    keys = session.exec(select(func.count()).select_from(SshKey).where(SshKey.member_id == member.id)).one()
    tokens = session.exec(select(func.count()).select_from(ApiToken).where(ApiToken.member_id == member.id)).one()
    return keys, tokens


def _read(session: Session, member: Member, tenant: Tenant) -> MemberRead:
    keys, tokens = _counts(session, member)
    return MemberRead(
        tenant=tenant.name, name=member.name, role=MemberRole(member.role), keys=keys, tokens=tokens,
        created_at=member.created_at,
    )  # fmt: skip
