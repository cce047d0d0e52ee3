"""TLS certificates: parsed and checked (`Certificate`), issued for the default domain by a local CA
(`LocalCA`, mkcert's and Caddy's model for `localhost`), and kept on disk for HAProxy (`CertStore`).

Hostnames are checked by `check_hostname` before they reach a certificate or a file name: lowercase
ASCII DNS names, a `*.` prefix allowed; upper case is lowered, anything else is refused.
"""

import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal, get_args

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tenants.names import MAX_HOSTNAME_LENGTH

log = logging.getLogger(__name__)

Source = Literal["local", "acme", "operator"]
SOURCES: tuple[str, ...] = get_args(Source)

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_KEY_MARKER = b"-----BEGIN PRIVATE KEY-----"
CA_DAYS = 3650
BACKDATE = timedelta(hours=1)  # tolerate clients whose clocks run a little behind


class CertificateError(ValueError):
    """A certificate, key, hostname or file that cannot be used, told in one readable line (never a key)."""


def check_hostname(name: str) -> str:
    """`name` lower-cased if it is a DNS name (labels of 1–63 `[a-z0-9-]`, no leading or trailing `-`, at most
    253 in all; one label is enough, for `localhost`), optionally `*.`-prefixed; CertificateError otherwise.

    Non-ASCII is refused before lowering, so no Unicode case mapping can turn a name into another one."""
    host = name.lower() if name.isascii() else ""
    if (
        not host
        or len(host) > MAX_HOSTNAME_LENGTH
        or not all(_LABEL.fullmatch(label) for label in host.removeprefix("*.").split("."))
    ):
        raise CertificateError(f"{name!r} is not a valid hostname (like shop.example.com or *.example.com)")
    return host


def covers(sans: Sequence[str], hostname: str) -> bool:
    """Whether `sans` name `hostname`: exactly (case-insensitive), or `*.example.com` for one more label."""
    host = hostname.lower()
    label, _, parent = host.partition(".")
    return any(host == san or (san.startswith("*.") and label and parent == san[2:]) for san in sans)


def renew_at(not_before: datetime, not_after: datetime) -> datetime:
    """When a third of the lifetime is left (what Let's Encrypt advises and Caddy does)."""
    return not_after - (not_after - not_before) / 3


def _public_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _short_name(name: x509.Name) -> str:
    """The CN, else the O, else the whole RFC 4514 string."""
    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME):
        for attribute in name.get_attributes_for_oid(oid):
            return str(attribute.value)
    return name.rfc4514_string()


@dataclass(frozen=True)
class Certificate:
    """A leaf certificate with its chain and private key. Build it with `from_pem`, which checks them and fills the
    fields parsed from the leaf (`hostnames` are its DNS SANs, lower-cased, the first being the primary)."""

    hostnames: tuple[str, ...]
    chain_pem: bytes  # leaf first, then intermediates
    key_pem: bytes  # PKCS8 PEM, unencrypted
    not_before: datetime  # aware, UTC
    not_after: datetime  # aware, UTC
    issuer: str  # the issuer's CN or O

    @classmethod
    def from_pem(cls, chain_pem: bytes, key_pem: bytes) -> "Certificate":
        """Parse and check a chain (leaf first) and its key, re-encoded (the key as PKCS8): CertificateError if the
        chain holds no certificate, the key is unreadable or encrypted or not the leaf's, or the leaf has no DNS SAN."""
        try:
            chain = x509.load_pem_x509_certificates(chain_pem)
        except ValueError:
            raise CertificateError("the certificate is not a PEM certificate chain") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise CertificateError("the private key is not an unencrypted PEM private key") from None
        leaf = chain[0]
        if _public_der(key.public_key()) != _public_der(leaf.public_key()):
            raise CertificateError("the private key does not match the certificate's public key")
        try:
            sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            sans = x509.SubjectAlternativeName([])
        hostnames = tuple(name.lower() for name in sans.get_values_for_type(x509.DNSName))
        if not hostnames:
            raise CertificateError("the certificate names no DNS hostname (no DNS subject alternative name)")
        return cls(
            hostnames=hostnames,
            chain_pem=b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain),
            key_pem=_key_pem(key),
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            issuer=_short_name(leaf.issuer),
        )

    def renew_at(self) -> datetime:
        return renew_at(self.not_before, self.not_after)

    def fingerprint(self) -> str:
        """The leaf's SHA-256 (hex): what tells two copies of one certificate from a renewed one."""
        leaf = x509.load_pem_x509_certificate(self.chain_pem)
        return hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()

    def combined_pem(self) -> bytes:
        """Chain then key: the one file HAProxy loads per certificate."""
        return self.chain_pem + self.key_pem

    def covers(self, hostname: str) -> bool:
        return covers(self.hostnames, hostname)


def _private_directory(directory: Path) -> Path:
    """`directory`, made 0700 if missing; CertificateError if group or others may enter or read it."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if directory.stat().st_mode & 0o077:
        raise CertificateError(f"{directory} is open to group or others; chmod 700 it")
    return directory


def _write_private(path: Path, data: bytes) -> None:
    """Replace `path` atomically with `data`: a temp file created 0600 (never widened), synced, then renamed."""
    temp = path.with_name(f".{secrets.token_hex(8)}.tmp")  # a dotfile: never a hostname's, never globbed
    fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


class LocalCA:
    """A CA of this installation (`ca.key`, `ca.pem` under `directory`) for the default domain `localhost`, made on
    first use; clients trust it once (`strata ca export`). Creation runs under an exclusive lock on `ca.lock`, and
    `ca.key` is written last, so concurrent first uses end with one CA and a crash leaves none half-made."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.key_path = directory / "ca.key"
        self.cert_path = directory / "ca.pem"

    def certificate_pem(self) -> bytes:
        """The CA certificate (PEM) for clients to trust."""
        return self._authority[1].public_bytes(serialization.Encoding.PEM)

    def pem_pair(self) -> tuple[bytes, bytes]:
        """The CA's certificate and key (PEM), made first if there is none: for the other daemons to adopt."""
        key, cert = self._authority
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    def adopt(self, certificate_pem: bytes, key_pem: bytes) -> None:
        """Make the CA of `certificate_pem` and `key_pem` this directory's (the platform's one CA, which every
        daemon's door signs with); CertificateError if the key is not the certificate's EC key."""
        self._parse(certificate_pem, key_pem)
        with self._locked():
            if self.key_path.exists() and self.key_path.read_bytes() == key_pem:
                return
            self.key_path.unlink(missing_ok=True)  # written last, as on creation: a crash leaves no mismatched pair
            _write_private(self.cert_path, certificate_pem)
            _write_private(self.key_path, key_pem)
            self.__dict__.pop("_authority", None)

    def issue(self, hostnames: Sequence[str], *, days: int = 90, now: datetime | None = None) -> Certificate:
        """A server certificate for `hostnames` (checked by `check_hostname`; the first is the primary) on a fresh
        P-256 key, valid from an hour before `now` for `days`. The chain is the leaf alone: clients hold the CA."""
        names = list(dict.fromkeys(check_hostname(name) for name in hostnames))
        if not names or days < 1:
            raise CertificateError("a certificate needs at least one hostname and at least one day")
        ca_key, ca_cert = self._authority
        key = ec.generate_private_key(ec.SECP256R1())
        start = now or datetime.now(UTC)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))  # the names are in the SAN, which is critical therefore (RFC 5280)
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start - BACKDATE)
            .not_valid_after(start + timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(_authority_key_id(ca_cert), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return Certificate.from_pem(leaf.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    @cached_property
    def _authority(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        with self._locked():
            if not self.key_path.exists():
                self._create()
            return self._load()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        _private_directory(self.directory)
        fd = os.open(self.directory / "ca.lock", os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _create(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, f"Strata local CA {secrets.token_hex(4)}"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Strata"),
            ]
        )
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            # a browser told to trust it trusts it for `localhost` and names under it only, never a real domain
            .add_extension(
                x509.NameConstraints(permitted_subtrees=[x509.DNSName("localhost")], excluded_subtrees=None),
                critical=True,
            )  # fmt: skip
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self.cert_path, cert.public_bytes(serialization.Encoding.PEM))
        _write_private(self.key_path, _key_pem(key))

    def _load(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        if self.key_path.stat().st_mode & 0o077:
            raise CertificateError(f"{self.key_path} is readable by group or others; chmod 600 it")
        try:
            return self._parse(self.cert_path.read_bytes(), self.key_path.read_bytes())
        except OSError as error:
            raise CertificateError(f"the local CA in {self.directory} is unreadable: {error}") from None

    def _parse(self, certificate_pem: bytes, key_pem: bytes) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        try:
            cert = x509.load_pem_x509_certificate(certificate_pem)
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as error:
            raise CertificateError(f"the local CA in {self.directory} is unreadable: {error}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or _public_der(key.public_key()) != _public_der(
            cert.public_key()
        ):
            raise CertificateError(f"{self.key_path} is not the EC key of {self.cert_path}")
        return key, cert


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


@dataclass(frozen=True)
class StoredCertificate:
    """A store entry of primary `hostname`; `path` is the combined PEM HAProxy loads."""

    hostname: str
    certificate: Certificate
    source: Source
    path: Path


SHARED_MARK = ".shared"  # in a store whose certificates came from the ledger (never a hostname: it starts with a dot)


class CertStore:
    """The certificates this daemon's door serves, under a 0700 `directory` (HAProxy reads them there; the shared
    ledger is where they come from), per primary hostname: `<host>.pem` (chain then key, 0600, replaced atomically)
    and `<host>.json` (hostnames, source, issuer, not_after, updated). A wildcard's files are
    `_wildcard_.<parent>.*`: `_` is never in a checked hostname, so no two hostnames share a file."""

    def __init__(self, directory: Path) -> None:
        self.directory = _private_directory(directory)

    def save(self, cert: Certificate, source: Source) -> Path:
        """Store `cert` under its primary hostname, replacing any entry; the .pem's path."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
        pem, meta = self._paths(cert.hostnames[0])
        _write_private(pem, cert.combined_pem())
        data = {
            "hostnames": list(cert.hostnames),
            "source": source,
            "issuer": cert.issuer,
            "not_after": cert.not_after.isoformat(),
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write_private(meta, json.dumps(data, indent=2).encode() + b"\n")
        return pem

    def shared(self) -> bool:
        """Whether what the store holds came from the shared ledger: not so in a home kept before certificates
        were shared (an upgrade), until `mark_shared`."""
        return (self.directory / SHARED_MARK).exists()

    def drop_unissued(self) -> None:
        """Remove the entries that hold no certificate (a store kept before they were shared recorded a failed
        order's error that way): they would be read as corrupt at every start."""
        for meta in self.directory.glob("*.json"):
            if not meta.with_suffix(".pem").exists():
                meta.unlink(missing_ok=True)

    def mark_shared(self) -> None:
        _write_private(self.directory / SHARED_MARK, b"")

    def get(self, hostname: str) -> StoredCertificate | None:
        """The entry of primary `hostname`, None if there is none; CertificateError if it is corrupt."""
        pem, meta = self._paths(hostname)
        if not meta.exists():
            return None
        try:
            data = json.loads(meta.read_bytes())
            hostnames, source = data["hostnames"], data["source"]
            certificate = _split(pem.read_bytes())
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CertificateError(f"the entry of {hostname} in {self.directory} is corrupt: {error}") from None
        if source not in SOURCES or not hostnames:
            raise CertificateError(f"{meta} is corrupt: bad hostnames or source")
        return StoredCertificate(str(hostnames[0]), certificate, source, pem)

    def all(self) -> list[StoredCertificate]:
        """Every readable entry, by hostname; corrupt ones are logged and skipped, so one bad file hides no other."""
        entries = []
        for meta in sorted(self.directory.glob("*.json")):
            hostname = meta.name.removesuffix(".json").replace("_wildcard_", "*", 1)
            try:
                entry = self.get(hostname)
            except CertificateError as error:
                log.warning("skipping certificate entry %s: %s", meta.name, error)
                continue
            if entry is not None:
                entries.append(entry)
        return sorted(entries, key=lambda entry: entry.hostname)

    def remove(self, hostname: str) -> bool:
        """Delete the entry of `hostname`; whether there was one."""
        found = False
        for path in self._paths(hostname):
            try:
                path.unlink()
                found = True
            except FileNotFoundError:
                pass
        return found

    def _paths(self, hostname: str) -> tuple[Path, Path]:
        stem = check_hostname(hostname).replace("*", "_wildcard_", 1)
        return self.directory / f"{stem}.pem", self.directory / f"{stem}.json"


def _split(combined: bytes) -> Certificate:
    """The `Certificate` in a combined PEM as `combined_pem` writes it (chain, then a PKCS8 key)."""
    chain, marker, key = combined.partition(_KEY_MARKER)
    if not marker:
        raise CertificateError("the PEM file holds no PKCS8 private key")
    return Certificate.from_pem(chain, marker + key)
