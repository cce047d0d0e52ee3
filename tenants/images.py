"""Which images each tenant owns: those pulled with its credentials and those built from its source.

The rule that keeps tenants' images apart (Kubernetes' AlwaysPullImages, done once per tenant and reference):
a tenant runs a reference only as the image recorded for it here. A reference no tenant owns and that the
image store holds as built or loaded there (`strata images bootstrap`, `strata images load`; never pulled from a
registry, so a deleted tenant's pulls never become everyone's) is the platform's own, usable by all; anything
else is pulled with the tenant's credentials first, and the pull is what proves the tenant may. References are
kept in their canonical spelling (`tenants.references.canonical`).
"""

from sqlmodel import Session, col, select

from tenants.enums import ImageSource
from tenants.models import Tenant, TenantImage, saved_id, utcnow


def owned(session: Session, tenant: Tenant, reference: str) -> TenantImage | None:
    """The tenant's image by the reference it names, if it pulled or built one."""
    query = select(TenantImage).where(TenantImage.tenant_id == tenant.id, TenantImage.reference == reference)
    return session.exec(query).first()


def owned_by_any(session: Session, reference: str) -> bool:
    """Whether some tenant pulled or built this reference: then it is no platform image."""
    return session.exec(select(TenantImage.id).where(TenantImage.reference == reference)).first() is not None


def record(
    session: Session, tenant: Tenant, reference: str, image_id: str, source: ImageSource, size_bytes: int
) -> TenantImage:
    """Remember that the tenant pulled or built `reference` as `image_id` (a newer pull replaces an older);
    the caller commits."""
    image = owned(session, tenant, reference) or TenantImage(
        tenant_id=saved_id(tenant), reference=reference, image_id=image_id, source=source
    )
    image.image_id, image.source, image.size_bytes, image.created_at = image_id, source, size_bytes, utcnow()
    session.add(image)
    return image


def list_owned(session: Session, tenant: Tenant | None) -> list[tuple[str, TenantImage]]:
    """(tenant name, image) for one tenant's images, or every tenant's (for an operator)."""
    query = select(Tenant.name, TenantImage).join(Tenant, col(Tenant.id) == TenantImage.tenant_id)
    if tenant is not None:
        query = query.where(TenantImage.tenant_id == tenant.id)
    return [(name, image) for name, image in session.exec(query.order_by(Tenant.name, TenantImage.reference))]
