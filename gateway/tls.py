"""Certificates in HAProxy: the placeholder its HTTPS listener starts with, and certificates loaded at run time.

HAProxy's `bind ... ssl` wants one certificate to start; `strict-sni` makes sure that placeholder is never what
a client gets: a handshake naming no hostname we hold a certificate for is refused. Real certificates are added
and replaced through the runtime API (`new/set/commit ssl cert`, `add ssl crt-list`) — no reload — and written to
the crt-list file, so that a reload or restart loads them too.
"""

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway import runtime

PLACEHOLDER_NAME = "placeholder.strata.invalid"


def ensure_placeholder(path: Path) -> None:
    """A self-signed certificate for a name no client asks for (`.invalid`, RFC 2606), made once (0600)."""
    if path.exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, PLACEHOLDER_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(PLACEHOLDER_NAME)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    os.replace(temporary, path)


async def load(socket: Path, crt_list: Path, path: Path, known: bool) -> None:
    """Serve the combined PEM at `path` (written already) at once: a new entry of the crt-list, or a
    replacement of the certificate HAProxy holds under that path (`known`: it loaded it from the crt-list)."""
    pem = path.read_text()
    if not known:
        await runtime.expect(socket, f"new ssl cert {path}", ok=("New empty certificate store", "Certificate"))
    await runtime.expect(socket, f"set ssl cert {path}", payload=pem, ok=("Transaction created", "Transaction updated"))
    await runtime.expect(socket, f"commit ssl cert {path}", ok=("Committing", "Success"))
    if not known:
        await runtime.expect(socket, f"add ssl crt-list {crt_list} {path}", ok=("Inserting", "Success"))


async def unload(socket: Path, crt_list: Path, path: Path) -> None:
    """Take the certificate at `path` out of the crt-list and out of HAProxy's memory."""
    await runtime.expect(socket, f"del ssl crt-list {crt_list} {path}", ok=("Entry", "Success", "No such"))
    await runtime.expect(socket, f"del ssl cert {path}", ok=("Certificate", "Success", "No such"))
