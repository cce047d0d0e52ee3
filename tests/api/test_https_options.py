"""An app's HTTPS options (`https_redirect`, `hsts`) are kept with its desired state, through the API and the CLI."""

import json
import subprocess

from tenants.schemas import AppSpec, TenantCreate
from tests.harness import Daemon


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_deploy_stores_and_returns_the_https_options(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
        plain = api.deploy(unique, "plain", AppSpec(image="strata/hello"))
        assert (plain.https_redirect, plain.hsts) == (False, False)

        created = api.deploy(unique, "web", AppSpec(image="strata/hello", https_redirect=True, hsts=True))
        assert (created.https_redirect, created.hsts) == (True, True)
        assert (api.app(unique, "web").https_redirect, api.app(unique, "web").hsts) == (True, True)

        # An update made from the app as it is (as `apps deploy` and a build's deploy make theirs) keeps them.
        current = api.app(unique, "web").model_dump(include=set(AppSpec.model_fields))
        updated = api.deploy(unique, "web", AppSpec.model_validate(current | {"image": "strata/hello:2"}))
        assert (updated.image, updated.https_redirect, updated.hsts) == ("strata/hello:2", True, True)

        turned_off = api.deploy(unique, "web", AppSpec.model_validate(current | {"hsts": False}))
        assert (turned_off.https_redirect, turned_off.hsts) == (True, False)


def test_apps_deploy_sets_the_https_options_and_keeps_them_when_not_given(daemon: Daemon, unique: str) -> None:
    ok(daemon.cli("tenants", "create", unique))
    ref = f"{unique}/web"
    ok(daemon.cli("apps", "deploy", ref, "--image", "strata/hello", "--https-redirect", "--hsts", "--detach"))

    def show() -> dict[str, object]:
        return dict(json.loads(ok(daemon.cli("apps", "show", ref, "--json"))))

    assert (show()["https_redirect"], show()["hsts"]) == (True, True)

    ok(daemon.cli("apps", "deploy", ref, "--env", "MODE=fast", "--detach"))  # neither option given: unchanged
    app = show()
    assert (app["env"], app["https_redirect"], app["hsts"]) == ({"MODE": "fast"}, True, True)

    ok(daemon.cli("apps", "deploy", ref, "--no-hsts", "--detach"))
    assert (show()["https_redirect"], show()["hsts"]) == (True, False)
    text = ok(daemon.cli("apps", "show", ref))
    assert "https-redirect: on" in text and "hsts:           off" in text

    refused = daemon.cli("apps", "deploy", ref, "--build", ".", "--hsts")
    assert refused.returncode != 0 and "--build deploys the built image alone" in refused.stderr
