"""Certificates of the gateway: the local CA's files and what it issues (checked by cryptography's verifier and by a
real TLS handshake through the stdlib), hostname checks, and the on-disk store HAProxy reads."""

import ipaddress
import json
import logging
import multiprocessing
import multiprocessing.synchronize
import socket
import ssl
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from gateway.certs import Certificate, CertificateError, CertStore, LocalCA, check_hostname

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return LocalCA(tmp_path_factory.mktemp("state") / "ca")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_ca_is_made_on_first_use_private_from_the_start(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "ca")
    assert not (tmp_path / "ca").exists()
    cert = x509.load_pem_x509_certificate(ca.certificate_pem())
    assert (mode(tmp_path / "ca"), mode(ca.key_path), mode(ca.cert_path)) == (0o700, 0o600, 0o600)
    assert cert.subject.rfc4514_string().startswith("O=Strata,CN=Strata local CA ")
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > timedelta(days=3650)


def test_a_second_ca_on_the_same_directory_reuses_it(ca: LocalCA) -> None:
    assert LocalCA(ca.directory).certificate_pem() == ca.certificate_pem() == ca.cert_path.read_bytes()


def first_use(
    directory: Path, start: "multiprocessing.synchronize.Barrier", results: "multiprocessing.Queue[str]"
) -> None:
    start.wait()
    try:
        results.put(LocalCA(directory).certificate_pem().decode())
    except CertificateError as error:
        results.put(str(error))


def test_concurrent_first_uses_make_one_ca(tmp_path: Path) -> None:
    """Processes, not threads: under the GIL, threads hardly ever interleave in the window."""
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(8), context.Queue()
    processes = [context.Process(target=first_use, args=(tmp_path / "ca", start, results)) for _ in range(8)]
    for process in processes:
        process.start()
    pems = {results.get(timeout=10) for _ in processes}
    for process in processes:
        process.join()
    assert pems == {(tmp_path / "ca" / "ca.pem").read_text()}
    assert sorted(path.name for path in (tmp_path / "ca").iterdir()) == ["ca.key", "ca.lock", "ca.pem"]


def test_a_ca_open_to_others_is_refused(tmp_path: Path) -> None:
    LocalCA(tmp_path / "ca").certificate_pem()
    (tmp_path / "ca").chmod(0o750)
    with pytest.raises(CertificateError, match=f"{tmp_path / 'ca'} is open to group or others"):
        LocalCA(tmp_path / "ca").certificate_pem()
    (tmp_path / "ca").chmod(0o700)
    (tmp_path / "ca" / "ca.key").chmod(0o640)
    with pytest.raises(CertificateError, match="ca.key is readable by group or others"):
        LocalCA(tmp_path / "ca").certificate_pem()


def test_an_issued_certificate_holds_the_leaf_alone_with_its_names_and_dates(ca: LocalCA) -> None:
    cert = ca.issue(["App.Acme.localhost", "localhost", "app.acme.localhost"], days=90, now=NOW)
    assert cert.hostnames == ("app.acme.localhost", "localhost")
    assert len(x509.load_pem_x509_certificates(cert.chain_pem)) == 1
    assert cert.issuer.startswith("Strata local CA ")
    assert (cert.not_before, cert.not_after) == (NOW - timedelta(hours=1), NOW + timedelta(days=90))
    assert cert.renew_at() == cert.not_before + (cert.not_after - cert.not_before) * 2 / 3
    assert cert.combined_pem() == cert.chain_pem + cert.key_pem
    assert cert.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    leaf = x509.load_pem_x509_certificate(cert.chain_pem)
    assert leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
    )
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_an_issued_certificate_verifies_against_the_ca(ca: LocalCA) -> None:
    leaf = x509.load_pem_x509_certificate(ca.issue(["app.acme.localhost", "localhost"]).chain_pem)
    policy = PolicyBuilder().store(Store([x509.load_pem_x509_certificate(ca.certificate_pem())]))
    for host in ("app.acme.localhost", "localhost"):
        policy.build_server_verifier(x509.DNSName(host)).verify(leaf, [])
    with pytest.raises(VerificationError):
        policy.build_server_verifier(x509.DNSName("other.localhost")).verify(leaf, [])


def handshake(combined: Path, ca_pem: bytes, server_hostname: str) -> bytes:
    """Serve `combined` on 127.0.0.1 once and connect as a client trusting `ca_pem` only."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(combined)
    client = ssl.create_default_context(cadata=ca_pem.decode())  # str: bytes would mean DER
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)

        def serve() -> None:
            connection, _ = listener.accept()
            try:
                with server.wrap_socket(connection, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass  # the client refused us

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection(listener.getsockname(), timeout=5) as raw,
                client.wrap_socket(raw, server_hostname=server_hostname) as tls,
            ):
                return tls.recv(2)
        finally:
            thread.join()


def test_an_issued_certificate_serves_tls_to_a_stdlib_client(ca: LocalCA, tmp_path: Path) -> None:
    path = CertStore(tmp_path / "certs").save(ca.issue(["app.acme.localhost"]), "local")
    assert handshake(path, ca.certificate_pem(), "app.acme.localhost") == b"ok"
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(path, ca.certificate_pem(), "other.localhost")


def test_from_pem_refuses_a_key_of_another_certificate_and_garbage(ca: LocalCA) -> None:
    one, other = ca.issue(["one.localhost"]), ca.issue(["other.localhost"])
    assert Certificate.from_pem(one.chain_pem, one.key_pem) == one
    with pytest.raises(CertificateError, match="the private key does not match the certificate's public key"):
        Certificate.from_pem(one.chain_pem, other.key_pem)
    with pytest.raises(CertificateError, match="not a PEM certificate chain"):
        Certificate.from_pem(b"garbage", one.key_pem)
    with pytest.raises(CertificateError, match="not an unencrypted PEM private key"):
        Certificate.from_pem(one.chain_pem, b"garbage")


def test_from_pem_refuses_a_certificate_without_a_dns_name() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "example.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(CertificateError, match="names no DNS hostname"):
        Certificate.from_pem(cert.public_bytes(serialization.Encoding.PEM), key_pem)


@pytest.mark.parametrize(
    "name", ["../x", "a..b", "-a.b", "a-.b", f"{'a' * 64}.b", "a_b.c", "", ".", "a.", "*", "*.", "a.*.b", "ä.b"]
)
def test_bad_hostnames_are_refused(ca: LocalCA, name: str) -> None:
    with pytest.raises(CertificateError, match="is not a valid hostname"):
        check_hostname(name)
    with pytest.raises(CertificateError, match=repr(name).replace(".", r"\.").replace("*", r"\*")):
        ca.issue(["ok.localhost", name])


def test_hostnames_are_lowered_and_may_be_wildcards() -> None:
    assert check_hostname("Shop.Example.COM") == "shop.example.com"
    assert check_hostname("*.example.com") == "*.example.com"
    assert check_hostname("localhost") == "localhost"
    assert check_hostname(f"{'a' * 63}.b") == f"{'a' * 63}.b"
    with pytest.raises(CertificateError):
        check_hostname("\u212aelvin.example.com")  # the Kelvin sign lowers to an ASCII k


def test_a_wildcard_covers_exactly_one_label(ca: LocalCA) -> None:
    cert = ca.issue(["*.acme.localhost", "acme.localhost"])
    assert cert.covers("WEB.acme.localhost") and cert.covers("acme.localhost")
    assert not cert.covers("a.b.acme.localhost") and not cert.covers(".acme.localhost")
    assert not cert.covers("other.localhost")


def test_the_store_round_trips_private_files(ca: LocalCA, tmp_path: Path) -> None:
    store = CertStore(tmp_path / "certs")
    cert = ca.issue(["web.acme.localhost", "www.acme.localhost"])
    path = store.save(cert, "local")
    assert path == tmp_path / "certs" / "web.acme.localhost.pem"
    assert path.read_bytes() == cert.combined_pem()
    assert (mode(tmp_path / "certs"), mode(path), mode(path.with_suffix(".json"))) == (0o700, 0o600, 0o600)
    entry = store.get("WEB.acme.localhost")
    assert entry is not None
    assert (entry.hostname, entry.certificate, entry.source, entry.path) == ("web.acme.localhost", cert, "local", path)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["hostnames"] == ["web.acme.localhost", "www.acme.localhost"]
    assert meta["not_after"] == cert.not_after.isoformat()
    assert store.get("www.acme.localhost") is None  # entries are by primary hostname
    assert store.remove("web.acme.localhost") and not store.remove("web.acme.localhost")
    assert store.get("web.acme.localhost") is None and list((tmp_path / "certs").iterdir()) == []


def test_the_store_names_wildcards_safely_and_lists_by_hostname(ca: LocalCA, tmp_path: Path) -> None:
    store = CertStore(tmp_path / "certs")
    assert store.save(ca.issue(["*.b.localhost"]), "acme").name == "_wildcard_.b.localhost.pem"
    store.save(ca.issue(["a.localhost"]), "operator")
    assert [entry.hostname for entry in store.all()] == ["*.b.localhost", "a.localhost"]
    with pytest.raises(CertificateError, match="'../x' is not a valid hostname"):
        store.get("../x")
    with pytest.raises(ValueError, match="source must be one of local, acme, operator"):
        store.save(ca.issue(["a.localhost"]), "mine")  # type: ignore[arg-type]


def test_renewal_is_due_when_a_third_of_the_lifetime_is_left(ca: LocalCA) -> None:
    local = ca.issue(["local.localhost"], days=90, now=NOW)
    assert local.renew_at() == NOW - timedelta(hours=1) + (timedelta(days=90, hours=1)) * 2 / 3


def test_the_local_ca_adopts_another_and_signs_with_it(ca: LocalCA, tmp_path: Path) -> None:
    mine = LocalCA(tmp_path / "mine")
    mine.certificate_pem()  # made
    mine.adopt(*ca.pem_pair())
    assert mine.certificate_pem() == ca.certificate_pem() and mode(mine.key_path) == 0o600
    leaf = x509.load_pem_x509_certificate(mine.issue(["web.localhost"]).chain_pem)
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.certificate_pem()))
    assert LocalCA(tmp_path / "mine").certificate_pem() == ca.certificate_pem()  # kept in its files
    with pytest.raises(CertificateError, match="is not the EC key of"):
        mine.adopt(ca.certificate_pem(), LocalCA(tmp_path / "third").pem_pair()[1])
    assert mine.certificate_pem() == ca.certificate_pem()  # a refused pair changes nothing


def test_corrupt_entries_are_skipped_and_logged(ca: LocalCA, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = CertStore(tmp_path / "certs")
    store.save(ca.issue(["good.localhost"]), "local")
    store.save(ca.issue(["bad.localhost"]), "local")
    (tmp_path / "certs" / "bad.localhost.json").write_text("{not json")
    (tmp_path / "certs" / "gone.localhost.json").write_text('{"hostnames": ["gone.localhost"], "source": "acme"}')
    (tmp_path / "certs" / "not_a_host.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="gateway.certs"):
        assert [entry.hostname for entry in store.all()] == ["good.localhost"]
    assert sorted(record.getMessage().split(":")[0] for record in caplog.records) == [
        "skipping certificate entry bad.localhost.json",
        "skipping certificate entry gone.localhost.json",
        "skipping certificate entry not_a_host.json",
    ]
    with pytest.raises(CertificateError, match="the entry of bad.localhost .* is corrupt"):
        store.get("bad.localhost")
