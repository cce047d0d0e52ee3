"""Images from a real registry: Debian's docker-registry (the Distribution registry) on 127.0.0.1 with htpasswd
auth, an image pushed to it through the Docker API, and the real platform pulling it with each tenant's own
login, running it and answering through the gateway; a wrong or missing login changes nothing that runs, and
an image on the engine is no proof that another tenant may run it."""

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tenants.client import ApiError
from tenants.enums import Role
from tenants.schemas import AppSpec, RegistryLogin, TenantCreate, TokenCreate
from tests.containers import docker, ready, wait_for
from tests.harness import Daemon, free_port

REGISTRY = Path("/usr/bin/docker-registry")
USERS = {"alice": "alice-Pa55-registry", "bob": "bob-Pa55-registry"}
STATIC = AppSpec(image="strata/static", replicas=1, memory_mib=32, health_path="/")

pytestmark = pytest.mark.skipif(
    not REGISTRY.exists() or shutil.which("htpasswd") is None,
    reason="needs Debian's docker-registry and apache2-utils (`make install`)",
)


@dataclass(frozen=True)
class Registry:
    host: str  # 127.0.0.1:PORT
    image: str  # a private image pushed there, not on the engine any more


def _auth(host: str, user: str) -> str:
    login = {"username": user, "password": USERS[user], "serveraddress": host}
    return base64.urlsafe_b64encode(json.dumps(login).encode()).decode()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The registry, started here and stopped by its PID; an image built FROM strata/static pushed to it."""
    work = tmp_path_factory.mktemp("registry")
    htpasswd = "".join(
        subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True).stdout
        for user, password in USERS.items()
    )
    (work / "htpasswd").write_text(htpasswd)
    host = f"127.0.0.1:{free_port()}"
    (work / "config.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {work / 'data'}\n"
        f"http:\n  addr: {host}\nauth:\n  htpasswd:\n    realm: strata-test\n    path: {work / 'htpasswd'}\n"
    )
    log = (work / "registry.log").open("wb")
    process = subprocess.Popen([str(REGISTRY), "serve", str(work / "config.yml")], stdout=log, stderr=log)
    try:
        wait_for(lambda: _answers(host), timeout=15, what="the registry")
        image = f"{host}/team/site:{int(time.time())}"
        context = work / "context"
        context.mkdir()
        (context / "index.html").write_text("hello from a private registry\n")
        (context / "Dockerfile").write_text("FROM strata/static:latest\nCOPY index.html /www/index.html\n")
        docker("build", "-q", "-t", image, str(context))
        _push(image, host)
        docker("rmi", image)  # only the registry has it now
        yield Registry(host, image)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        # What the tests' tenants pulled from it (gone with their tenants; no sweep removes pulled images yet).
        pulled = docker("images", "-q", "--filter", f"reference={host}/*/*").split()
        if pulled:
            subprocess.run(["docker", "rmi", "-f", *set(pulled)], capture_output=True, check=False)


def _answers(host: str) -> bool:
    try:
        return httpx.get(f"http://{host}/v2/", timeout=1).status_code == 401
    except httpx.HTTPError:
        return False


def _push(image: str, host: str) -> None:
    """`docker push` through the engine's API with the login in X-Registry-Auth (no `docker login`: it would
    write ~/.docker)."""
    name, _, tag = image.rpartition(":")
    with httpx.Client(transport=httpx.HTTPTransport(uds="/var/run/docker.sock"), timeout=60) as engine:
        answer = engine.post(
            f"http://docker/images/{name}/push", params={"tag": tag}, headers={"X-Registry-Auth": _auth(host, "alice")}
        )
    assert answer.status_code == 200 and '"error"' not in answer.text, answer.text


def _login(platform: Daemon, tenant: str, host: str, user: str, password: str) -> None:
    added = platform.cli("registries", "add", tenant, host, "--username", user, "--password-stdin", stdin=password)
    assert added.returncode == 0, added.stderr


def _problem(platform: Daemon, tenant: str) -> str | None:
    with platform.operator() as api:
        return api.app(tenant, "web").problem


def _through_gateway(platform: Daemon, tenant: str) -> httpx.Response:
    return httpx.get(f"http://{platform.gateway}/", headers={"Host": f"web.{tenant}.localhost"}, timeout=10)


def test_a_tenant_pulls_its_private_image_with_its_login_and_it_serves(
    platform: Daemon, unique: str, registry: Registry
) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
    refused = platform.cli("registries", "add", unique, registry.host, "-u", "alice", "-p", USERS["alice"])
    assert refused.returncode == 2 and "--password-stdin" in refused.stderr
    _login(platform, unique, registry.host, "alice", USERS["alice"])

    deployed = platform.cli(
        "apps", "deploy", f"{unique}/web", "--image", registry.image, "--health", "/", "--memory", "32M", timeout=120
    )
    assert deployed.returncode == 0, deployed.stderr
    # its pull is proven below (the image.pulled event, the image's source); the CLI shows a line of it only if it
    # polls while the pull runs, which a 2 MB image from loopback can outrun
    assert "revision 1 is ready" in deployed.stdout
    answer = wait_for(lambda: (r := _through_gateway(platform, unique)).status_code == 200 and r, what="a route")
    assert answer.text == "hello from a private registry\n"

    with platform.operator() as api:
        [mine] = api.tenant_images(unique)
        [login] = api.registries(unique)
        events = api.events(unique)
        on_engine = [i for i in api.images() if i.id == mine.image_id]
    assert mine.reference == registry.image and mine.source == "pull"
    assert on_engine and on_engine[0].owners == [unique]
    assert (login.host, login.username) == (registry.host, "alice")
    assert {"registry.add", "image.pulled"} <= {e.action for e in events}
    listed = platform.cli("registries", "list", unique, "--json")
    shown = platform.cli("images", "list", unique)
    assert registry.image in shown.stdout
    daemon_log = (platform.home.parent / f"{platform.home.name}-daemon.log").read_text()
    for text in (listed.stdout, json.dumps([e.model_dump(mode="json") for e in events]), daemon_log):
        assert USERS["alice"] not in text
    assert USERS["alice"].encode() not in (platform.home / "strata.db").read_bytes()


def test_a_wrong_login_names_unauthorized_and_the_running_revision_keeps_serving(
    platform: Daemon, unique: str, registry: Registry
) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        api.deploy(unique, "web", STATIC)
    [serving] = ready(platform, unique, "web", 1)
    _login(platform, unique, registry.host, "alice", "not-the-password")

    failed = platform.cli("apps", "deploy", f"{unique}/web", "--image", registry.image, timeout=60)
    assert failed.returncode == 1 and "ImagePullBackOff: Unauthorized" in failed.stderr
    with platform.operator() as api:
        app = api.app(unique, "web")
        pulls = [e for e in api.events(unique) if e.action == "image.pull_failed"]
        assert api.tenant_images(unique) == []
    assert [(i.id, i.revision, i.state) for i in app.instances] == [(serving.id, 1, "ready")]
    assert pulls and pulls[0].detail["reason"] == "Unauthorized" and "not-the-password" not in str(pulls[0].detail)
    assert _through_gateway(platform, unique).status_code == 200


def test_another_tenant_cannot_run_the_image_on_the_engine_without_its_own_login(
    platform: Daemon, unique: str, registry: Registry
) -> None:
    owner, other = unique, f"{unique}-b"
    with platform.operator() as api:
        for tenant in (owner, other):
            api.create_tenant(TenantCreate(name=tenant, plan="medium"))
    _login(platform, owner, registry.host, "alice", USERS["alice"])
    spec = STATIC.model_copy(update={"image": registry.image})
    with platform.operator() as api:
        api.deploy(owner, "web", spec)
    ready(platform, owner, "web", 1)
    assert registry.image in docker("images", "--format", "{{.Repository}}:{{.Tag}}")  # on the engine now

    with platform.operator() as api:
        api.deploy(other, "web", spec)
    problem = wait_for(lambda: _problem(platform, other), what="the refusal")
    assert problem.startswith("ImagePullBackOff: Unauthorized")
    with platform.operator() as api:
        assert api.app(other, "web").instances == []

    _login(platform, other, registry.host, "bob", USERS["bob"])
    with platform.operator() as api:
        api.restart(other, "web")  # a new revision pulls at once (the failed one waits for its backoff)
    ready(platform, other, "web", 1, revision=2)
    assert _through_gateway(platform, other).text == "hello from a private registry\n"


def test_an_unusable_secret_key_is_the_servers_condition_told_to_the_operator_not_a_tenant(
    daemon: Daemon, unique: str
) -> None:
    login = RegistryLogin(username="ci", password="pa55")
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
        api.add_registry(unique, "registry.example.com", login)  # the key exists now
        token = api.create_token(TokenCreate(role=Role.TENANT, tenant=unique, name="ci")).token
    key = daemon.home / "secret.key"
    key.chmod(0o644)
    try:
        with daemon.client(token) as mine, pytest.raises(ApiError) as tenant_sees:
            mine.add_registry(unique, "other.example.com", login)
        with daemon.operator() as api, pytest.raises(ApiError) as operator_sees:
            api.add_registry(unique, "other.example.com", login)
    finally:
        key.chmod(0o600)
    assert tenant_sees.value.status == 503 and "operator" in tenant_sees.value.message
    assert str(key) not in tenant_sees.value.message and str(daemon.home) not in tenant_sees.value.message
    assert operator_sees.value.status == 503 and f"chmod 600 {key}" in operator_sees.value.message
