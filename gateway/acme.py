"""Certificates ordered over ACME (RFC 8555) with HTTP-01 challenges.

The ACME client (certbot's `acme`) blocks: it runs in a worker thread, in two steps — place the order and
pick its challenges, then answer them and wait for the certificate. Between the two, on the caller's loop,
the challenges are published on a `ChallengeBoard` (what answers `/.well-known/acme-challenge/<token>`), and
withdrawn afterwards whatever happened. The account key lives in one file (made 0600 on first use); the
account is registered once and found again by that key after a restart.
"""

import asyncio
import datetime
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import josepy as jose
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


class AcmeError(Exception):
    """An order that failed, told in one readable line (never a key)."""


class ChallengeBoard(Protocol):
    async def publish(self, token: str, key_authorization: str) -> None: ...

    async def withdraw(self, token: str) -> None: ...


Challenge = tuple[messages.ChallengeBody, challenges.ChallengeResponse, str, str]  # (body, answer, token, key auth)


class AcmeIssuer:
    def __init__(
        self,
        directory_url: str,
        account_key_path: Path,
        board: ChallengeBoard,
        *,
        email: str | None = None,
        ca_bundle: Path | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.directory_url = directory_url
        self.account_key_path = account_key_path
        self.board = board
        self.email = email
        self.ca_bundle = ca_bundle
        self.timeout = timeout
        self.account_url: str | None = None
        self._client: client.ClientV2 | None = None
        self._lock = threading.Lock()

    async def order(self, hostnames: Sequence[str]) -> tuple[bytes, bytes]:
        """A certificate for `hostnames`: (full chain PEM, its new EC P-256 private key PEM, PKCS8)."""
        names = ", ".join(hostnames)
        if not hostnames:
            raise AcmeError("acme: no hostname to order a certificate for")
        key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        published: list[str] = []
        try:
            ca, orderr, pending = await asyncio.to_thread(self._place, key, list(hostnames))
            for _, _, token, key_authorization in pending:
                published.append(token)
                await self.board.publish(token, key_authorization)
            fullchain = await asyncio.to_thread(self._finish, ca, orderr, pending)
        except AcmeError:
            raise
        except errors.ValidationError as error:
            raise AcmeError(_validation_message(error)) from None
        except messages.Error as error:
            raise AcmeError(f"acme: {names}: {error.typ}: {error.detail}") from None
        except errors.IssuanceError as error:
            raise AcmeError(f"acme: {names}: {error.error.typ}: {error.error.detail}") from None
        except errors.TimeoutError:
            raise AcmeError(f"acme: {names}: no certificate within {self.timeout:g} s") from None
        except OSError as error:  # requests' errors are OSErrors
            raise AcmeError(f"acme: {names}: {self.directory_url}: {type(error).__name__}: {error}"[:300]) from None
        except (errors.Error, ValueError) as error:
            raise AcmeError(f"acme: {names}: {type(error).__name__}: {error}"[:300]) from None
        finally:
            for token in published:
                await self.board.withdraw(token)
        return fullchain.encode(), key

    def _place(
        self, key: bytes, hostnames: list[str]
    ) -> tuple[client.ClientV2, messages.OrderResource, list[Challenge]]:
        ca = self._account()
        orderr = ca.new_order(crypto_util.make_csr(key, hostnames))
        pending: list[Challenge] = []
        assert ca.net.key is not None
        for authzr in orderr.authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                continue  # the CA reused an earlier validation
            for challb in authzr.body.challenges:
                if isinstance(challb.chall, challenges.HTTP01):
                    answer, key_authorization = challb.chall.response_and_validation(ca.net.key)
                    pending.append((challb, answer, challb.chall.encode("token"), key_authorization))
                    break
            else:
                raise AcmeError(f"acme: {authzr.body.identifier.value}: the CA offers no http-01 challenge")
        return ca, orderr, pending

    def _finish(self, ca: client.ClientV2, orderr: messages.OrderResource, pending: list[Challenge]) -> str:
        for challb, answer, _, _ in pending:
            ca.answer_challenge(challb, answer)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=self.timeout)
        return str(ca.poll_and_finalize(orderr, deadline).fullchain_pem)

    def _account(self) -> client.ClientV2:
        """The client, its account registered — or found again: the CA answers a known key with its account."""
        with self._lock:
            if self._client is not None:
                return self._client
            key = _account_key(self.account_key_path)
            alg = jose.ES256 if isinstance(key, jose.JWKEC) else jose.RS256
            net = client.ClientNetwork(key, alg=alg, user_agent="strata-gateway", timeout=max(1, int(self.timeout)))
            if self.ca_bundle is not None:
                net.verify_ssl = str(self.ca_bundle)  # type: ignore[assignment]  # requests' `verify` takes a path
            ca = client.ClientV2(client.ClientV2.get_directory(self.directory_url, net), net)
            registration = messages.NewRegistration.from_data(email=self.email, terms_of_service_agreed=True)
            try:
                account = ca.new_account(registration)
            except errors.ConflictError as existing:
                net.account = messages.RegistrationResource(uri=existing.location, body=messages.Registration())
                account = ca.query_registration(net.account)
            self.account_url, self._client = account.uri, ca
            return ca


def _account_key(path: Path) -> jose.JWK:
    """The account key: read, or made (EC P-256, file 0600) if there is none yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return jose.JWKEC(key=key)
    if isinstance(key, rsa.RSAPrivateKey):
        return jose.JWKRSA(key=key)
    raise AcmeError(f"acme: {path}: the account key is neither RSA nor EC P-256")


def _validation_message(error: errors.ValidationError) -> str:
    for authzr in error.failed_authzrs:
        for challb in authzr.body.challenges:
            if challb.error is not None:
                return f"acme: {authzr.body.identifier.value}: {challb.error.typ}: {challb.error.detail}"
    return "acme: validation failed"
