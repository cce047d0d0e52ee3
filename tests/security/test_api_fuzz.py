"""The control API fuzzed from its own OpenAPI schema with schemathesis, as a tenant and as an operator: no
500, every answer as the schema says (status, content type, body, headers), and nothing a tenant's token
sends changes another tenant's data.

Left out: `positive_data_acceptance` (the schema cannot say that a plan must exist or that a tenant's key
must name its tenant; those are refused with 422, as they should), revoking tokens (the fuzzer would revoke
its own and test nothing more) and `/images/load` (a tar body schemathesis cannot make), all of which the API
tests exercise. Reproduce a failure with the seed: `st run URL --seed 1 ...`.
"""

import re
import subprocess
from pathlib import Path

from tenants.client import StrataClient
from tenants.enums import Role
from tenants.schemas import AppSpec, KeyCreate, TenantCreate, TokenCreate
from tests.harness import Daemon, start_daemon

SCHEMATHESIS = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "schemathesis")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b"


def fuzz(daemon: Daemon, token: str, tmp_path: Path) -> str:
    """schemathesis's report of a run that passed, having sent a fair number of requests."""
    run = subprocess.run(
        [
            SCHEMATHESIS, "run", f"{daemon.url}/openapi.json",
            "--header", f"Authorization: Bearer {token}",
            "--checks", "all", "--exclude-checks", "positive_data_acceptance",
            "--exclude-operation-id-regex", "revoke_token|load_images",
            "--max-examples", "25", "--seed", "1", "--request-timeout", "20",
            "--generation-database", "none", "--report-dir", str(tmp_path), "--no-color",
        ],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:]
    generated = re.search(r"(\d+) generated", run.stdout)
    assert generated and int(generated.group(1)) >= 500, run.stdout[-2000:]
    return run.stdout


def everything_of(api: StrataClient, tenant: str) -> list[object]:
    return [
        api.tenant(tenant),
        api.apps(tenant),
        api.keys(tenant),
        api.tokens(tenant),
        api.events(tenant=tenant, limit=500),
    ]


def test_fuzzing_the_api_finds_no_error_and_a_tenant_changes_no_one_elses_data(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    daemon = start_daemon(home)
    try:
        with daemon.operator() as api:
            for tenant in ("fuzzer", "bystander"):
                api.create_tenant(TenantCreate(name=tenant))
                api.deploy(tenant, "web", AppSpec(image="strata/hello"))
            api.add_key(KeyCreate(public_key=KEY, role=Role.TENANT, tenant="bystander"))
            tenant_token = api.create_token(TokenCreate(role=Role.TENANT, tenant="fuzzer")).token
            before = everything_of(api, "bystander")

        fuzz(daemon, tenant_token, tmp_path)
        with daemon.operator() as api:
            assert everything_of(api, "bystander") == before
        fuzz(daemon, daemon.operator_token, tmp_path)
    finally:
        assert daemon.stop() == 0
    assert "unexpected error" not in (home.parent / "home-daemon.log").read_text()
