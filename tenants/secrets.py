"""Secrets kept at rest encrypted (registry passwords), with one key of the installation.

Fernet (AES-128-CBC with an HMAC-SHA256, from `cryptography`): a token is authenticated, so a row tampered
with fails to decrypt rather than giving a wrong password. The key is a file of `STRATA_HOME`, made on first
use with mode 0600 by an exclusive create (two processes starting at once agree on one key), and refused when
others may read it: a database copied off the machine alone holds no usable secret.
"""

import hashlib
import hmac
import os
import stat
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

KEY_MODE = 0o600


class SecretKeyError(Exception):
    """The key file cannot be used (readable by others, unreadable, malformed); the message says what to do, for
    the operator (it names the key's file). `public` is what a tenant is told: the key's path and the state of
    the server's files are the operator's business, and nothing a tenant can act on."""

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public or (
            "the platform cannot use its key for stored secrets right now; an operator must fix it (the server's "
            "log says how)"
        )


class SecretBox:
    """Encrypts and decrypts short secrets with the key at `path` (read once, made if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fernet: Fernet | None = None

    def encrypt(self, secret: str) -> str:
        return self._key().encrypt(secret.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._key().decrypt(token.encode("ascii")).decode()
        except (InvalidToken, ValueError):
            raise SecretKeyError(
                f"a stored secret does not decrypt with {self.path}: the key changed since it was stored; "
                "store the secret again (e.g. `strata registries add`)",
                public="a stored registry login does not decrypt (the platform's key changed since it was stored): "
                "store it again (`strata registries add`)",
            ) from None

    def fingerprint(self) -> str:
        """A short name of the key that reveals nothing of it (an HMAC of a fixed label): daemons sharing a
        database compare theirs, since one with another key could not unseal what the others sealed."""
        key = _load_or_create(self.path)
        return hmac.new(key, b"strata secret key fingerprint", hashlib.sha256).hexdigest()[:16]

    def _key(self) -> Fernet:
        if self._fernet is None:
            self._fernet = Fernet(_load_or_create(self.path))
        return self._fernet


def _load_or_create(path: Path) -> bytes:
    """The key at `path`; made first if missing, whole and 0600 before its name appears (written to a private
    temporary file, then linked into place: a link never replaces a key another process made meanwhile)."""
    if path.exists():
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Fernet.generate_key()
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret-key-")  # mode 0600
    try:
        try:
            os.write(descriptor, key)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.link(temporary, path)
    except FileExistsError:
        return _read(path)
    finally:
        os.unlink(temporary)
    return key


def _read(path: Path) -> bytes:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise SecretKeyError(f"cannot read the secret key {path}: {exc.strerror}") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise SecretKeyError(f"the secret key {path} is not a regular file")
        if info.st_mode & 0o077:
            raise SecretKeyError(
                f"the secret key {path} may be read by others (mode {stat.S_IMODE(info.st_mode):o}); "
                f"make it private (`chmod 600 {path}`) and consider the secrets it protects exposed"
            )
        key = os.read(descriptor, 4096).strip()
    finally:
        os.close(descriptor)
    try:
        Fernet(key)
    except ValueError:
        raise SecretKeyError(
            f"the secret key {path} is not a Fernet key (or was being written); if it is damaged, remove it and "
            "add the registry credentials again"
        ) from None
    return key
