"""`/certs` (the front door's HTTPS certificates; operators) and `/ca` (the local CA's certificate, for any
caller to trust)."""

from typing import Annotated

from fastapi import APIRouter, Depends

from gateway.cert_ledger import Entry
from gateway.certificates import Certificates
from gateway.certs import CertificateError
from strata.api.deps import DB, Caller, Operator, get_platform
from strata.api.deps import Platform as _Platform
from tenants import audit
from tenants.errors import Conflict, Invalid
from tenants.schemas import CertificateRead, CertificateUpload, LocalCARead

router = APIRouter(tags=["certificates"])


async def get_certificates(platform: Annotated[_Platform, Depends(get_platform)]) -> Certificates:
    if platform.certificates is None:
        raise Conflict("this daemon serves no HTTPS (started with --https none)")
    return platform.certificates


HttpsCertificates = Annotated[Certificates, Depends(get_certificates)]


@router.get("/certs")
async def list_certificates(_: Operator, certificates: HttpsCertificates) -> list[CertificateRead]:
    """Each hostname's certificate, served by every daemon's front door: where it came from, its issuer and
    expiry, and the last error ordering it."""
    return [_read(entry) for entry in await certificates.entries()]


@router.put("/certs/{hostname}", status_code=201)
async def add_certificate(
    session: DB, principal: Operator, hostname: str, upload: CertificateUpload, certificates: HttpsCertificates
) -> CertificateRead:
    """Serve HOSTNAME (and the other names the certificate holds) with this certificate at every daemon's door
    at once; the platform never replaces it. The key is kept sealed (and 0600 on disk), never shown. A certificate
    that does not name HOSTNAME, or whose key does not match, is refused and changes nothing."""
    try:
        entry = await certificates.install(hostname, upload.certificate_pem.encode(), upload.key_pem.encode())
    except CertificateError as exc:
        raise Invalid(str(exc)) from None
    audit.record(session, principal.actor, "certificate.add", hostname=hostname, issuer=entry.issuer)
    session.commit()
    return _read(entry)


@router.get("/ca")
def local_ca(_: Caller, certificates: HttpsCertificates) -> LocalCARead:
    """The local CA's certificate (PEM): trust it (`curl --cacert`, a browser's authorities) to reach apps
    under the default domain over HTTPS."""
    return LocalCARead(certificate_pem=certificates.local_ca.certificate_pem().decode())


def _read(entry: Entry) -> CertificateRead:
    return CertificateRead(
        hostname=entry.hostname,
        hostnames=list(entry.hostnames),
        source=entry.source,
        issuer=entry.issuer,
        not_after=entry.not_after,
        last_error=entry.last_error,
    )
