"""OpenSSH public keys: parse the one-line format and compute the SHA256 fingerprint that `ssh-keygen -l`
and the SSH server show, without trusting anything beyond what the key blob itself says."""

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from tenants.errors import Invalid

KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)


@dataclass(frozen=True)
class PublicKey:
    key_type: str
    blob: bytes
    comment: str

    @property
    def fingerprint(self) -> str:
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"

    @property
    def openssh(self) -> str:
        """The key in one line without its comment: what the SSH server compares."""
        return f"{self.key_type} {base64.b64encode(self.blob).decode()}"


def parse_public_key(text: str) -> PublicKey:
    """Parse `type base64 [comment]`; the type inside the blob must match the one in front."""
    parts = text.strip().split(maxsplit=2)
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise Invalid(
            "not an OpenSSH public key: expected one line like 'ssh-ed25519 AAAA... comment' "
            "(the .pub file, not the private key)",
            field="public_key",
        )
    key_type, encoded = parts[0], parts[1]
    comment = parts[2] if len(parts) == 3 else ""
    try:
        blob = base64.b64decode(encoded, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        inner_type = blob[4 : 4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError):
        raise Invalid("the public key's base64 part is damaged", field="public_key") from None
    if inner_type != key_type or len(blob) <= 4 + length:
        raise Invalid(f"the key says it is {key_type} but its data is not", field="public_key")
    return PublicKey(key_type, blob, comment.strip()[:200])
