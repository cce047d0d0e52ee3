import subprocess
from pathlib import Path

import pytest

from tenants.errors import Invalid
from tenants.sshkeys import parse_public_key


@pytest.mark.parametrize("key_type", ["ed25519", "rsa", "ecdsa"])
def test_fingerprint_matches_ssh_keygen(tmp_path: Path, key_type: str) -> None:
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", "me@laptop", "-f", key], check=True)
    expected = subprocess.run(["ssh-keygen", "-l", "-f", f"{key}.pub"], capture_output=True, text=True, check=True)

    parsed = parse_public_key(Path(f"{key}.pub").read_text())

    assert expected.stdout.split()[1] == parsed.fingerprint
    assert parsed.comment == "me@laptop"
    assert Path(f"{key}.pub").read_text().startswith(parsed.openssh)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "ssh-ed25519",
        "ssh-ed25519 not-base64!!",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",  # ed25519 blob, rsa label
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
    ],
)
def test_anything_but_a_public_key_is_refused(text: str) -> None:
    with pytest.raises(Invalid) as refused:
        parse_public_key(text)
    assert refused.value.field == "public_key"
