"""Pebble, Let's Encrypt's ACME test server, run for tests with pebble-challtestsrv as its DNS.

Every name resolves to 127.0.0.1 (challtestsrv's default answer), and pebble validates HTTP-01 challenges
by connecting to 127.0.0.1:`http_port`: the test puts whatever answers challenges there. Pebble's ACME API
serves HTTPS with a certificate from a CA made here (`ca_bundle`); the certificates it issues chain up to a
root of its own, made at each start (`root_pem()`). Both processes log to files in the test's directory.
"""

import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

START_TIMEOUT_SECONDS = 20
NEW_ORDER = "POST /order-plz"  # pebble's log line for each new-order request


def free_port() -> int:
    """A port free on 127.0.0.1 for both TCP and UDP (the DNS server listens on both)."""
    while True:
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


@dataclass
class Pebble:
    directory_url: str
    management_url: str
    ca_bundle: Path
    log: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def root_pem(self) -> bytes:
        """Pebble's issuing root (made anew at each start)."""
        with urllib.request.urlopen(f"{self.management_url}/roots/0", context=self._context(), timeout=5) as reply:
            return bytes(reply.read())

    def orders_placed(self) -> int:
        return self.log.read_text(errors="replace").count(NEW_ORDER)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()

    def __enter__(self) -> "Pebble":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_pebble(directory: Path, http_port: int) -> Pebble:
    """Start challtestsrv (DNS only) and pebble; returns once pebble's directory answers. `stop()` ends both."""
    binary, challtestsrv = shutil.which("pebble"), shutil.which("pebble-challtestsrv")
    assert binary and challtestsrv, "pebble missing: run `make install`"
    directory.mkdir(parents=True, exist_ok=True)
    ca_bundle, certificate, key = _https_certificate(directory)
    port, management, dns = free_port(), free_port(), free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{port}",
            "managementListenAddress": f"127.0.0.1:{management}",
            "certificate": str(certificate),
            "privateKey": str(key),
            "httpPort": http_port,
            "tlsPort": free_port(),  # nothing listens there: TLS-ALPN-01 is not used
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (directory / "pebble.json").write_text(json.dumps(config, indent=2))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    pebble = Pebble(
        directory_url=f"https://127.0.0.1:{port}/dir",
        management_url=f"https://127.0.0.1:{management}",
        ca_bundle=ca_bundle,
        log=directory / "pebble.log",
    )
    # challtestsrv cannot turn its management interface off: it goes to a free loopback port.
    dns_server = [
        challtestsrv,
        *("-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""),
        *("-dns01", f"127.0.0.1:{dns}", "-management", f"127.0.0.1:{free_port()}"),
        *("-http01", "", "-https01", "", "-tlsalpn01", ""),
    ]
    settings = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
    try:
        with (directory / "challtestsrv.log").open("wb") as log:
            pebble.processes.append(subprocess.Popen(dns_server, stdout=log, stderr=subprocess.STDOUT, env=env))
        with pebble.log.open("wb") as log:
            command = [binary, "-config", str(directory / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns}"]
            pebble.processes.append(
                subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env | settings, cwd=directory)
            )
        _until_it_answers(pebble)
    except BaseException:
        pebble.stop()
        raise
    return pebble


def _until_it_answers(pebble: Pebble) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for process in pebble.processes:
            if process.poll() is not None:
                logs = "".join(p.read_text(errors="replace")[-2000:] for p in pebble.log.parent.glob("*.log"))
                raise AssertionError(f"pid {process.pid} exited with {process.returncode}: {logs}")
        try:
            with urllib.request.urlopen(pebble.directory_url, context=pebble._context(), timeout=2) as reply:
                if "newOrder" in json.load(reply):
                    return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"pebble did not answer on {pebble.directory_url} within {START_TIMEOUT_SECONDS} s")


def _https_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signs for 127.0.0.1 and localhost: (CA PEM, certificate PEM, key PEM)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "strata test CA for pebble")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "https-ca.pem", directory / "https-cert.pem", directory / "https-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    paths[2].write_bytes(pem)
    return paths
