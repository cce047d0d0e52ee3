"""The catalog's guestbook deployed for real in one call (`POST /tenants/T/catalog/guestbook/deploy`, what the
console's form sends): its image built by the platform (PostgreSQL's first, on a machine without it: minutes), its
database made and bound, and what a visitor signs through the front door kept in that PostgreSQL, across a
redeploy of the app."""

import json
import subprocess
import time
from urllib.parse import urlsplit

import httpx

from hosting.paas.catalog_images import GUESTBOOK
from tenants.catalog import TemplateDeploy
from tenants.enums import InstanceState
from tenants.schemas import InstanceRead, TenantCreate
from tests.containers import docker, inspect, wait_for
from tests.harness import Daemon

ENTRY = "signed through the front door <3 — ünïcode"
MAX_IMAGE_BYTES = 32 * 1024 * 1024  # psql, its libraries and busybox: not PostgreSQL's 193 MB


def ready_revision(platform: Daemon, tenant: str, app: str, count: int, revision: int) -> list[InstanceRead]:
    """`count` instances of `revision`, all ready, and no other (a deploy's roll has ended)."""

    def probe() -> list[InstanceRead] | None:
        with platform.operator() as api:
            found = api.instances(tenant, app)
        done = len(found) == count and all(i.revision == revision and i.state == InstanceState.READY for i in found)
        return found if done else None

    return wait_for(probe, timeout=180, what=f"{count} ready instances of {tenant}/{app} revision {revision}")


def psql(endpoint: str, url: str, sql: str) -> list[str]:
    """`psql` on this host through the service's published port, as the app (its DATABASE_URL's credentials)."""
    parts = urlsplit(url)
    local = parts._replace(netloc=f"{parts.username}:{parts.password}@{endpoint}").geturl()
    done = subprocess.run(["psql", local, "-XAtc", sql], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.splitlines()


def test_the_guestbook_keeps_what_visitors_sign_in_its_own_postgresql_across_a_redeploy(
    platform: Daemon, unique: str
) -> None:
    subprocess.run(["docker", "image", "rm", GUESTBOOK], capture_output=True, check=False)  # the deploy builds it
    started = time.monotonic()
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="small"))
        done = api.deploy_template(unique, "guestbook", TemplateDeploy(app="guestbook", env={"TITLE": "Visitors"}))
    deployed = time.monotonic() - started
    assert done.created == ["db"] and [(s.name, s.bound_to) for s in done.services] == [("db", ["guestbook"])]
    assert (done.app.revision, done.app.replicas) == (2, 2)  # revision 2 is the binding's
    [web, _] = ready_revision(platform, unique, "guestbook", 2, revision=2)
    served = time.monotonic() - started
    with platform.operator() as api:
        created = [e.detail for e in api.events(unique) if e.action == "instance.create"]
        [db] = api.instances(unique, "db")
    assert {d["revision"] for d in created if d["app"] == "guestbook"} == {2}  # none ran without DATABASE_URL

    container = inspect(web.container_id)  # as the platform runs it: nobody, read-only, no capability
    assert container["Config"]["User"] == "65534:65534"
    assert container["HostConfig"]["ReadonlyRootfs"] and container["HostConfig"]["CapDrop"] == ["ALL"]
    assert not container["HostConfig"]["CapAdd"]
    assert int(docker("image", "inspect", "--format", "{{.Size}}", GUESTBOOK)) < MAX_IMAGE_BYTES

    with httpx.Client(
        base_url=f"http://{platform.gateway}", headers={"Host": f"guestbook.{unique}.localhost"}, timeout=10
    ) as visitor:
        wait_for(lambda: visitor.get("/").status_code == 200, timeout=60, what="the guestbook at the front door")
        signed = visitor.post("/", data={"entry": ENTRY})
        assert (signed.status_code, signed.headers["location"]) == (303, "/")
        page = visitor.get("/").text
        assert "<h1>Visitors</h1>" in page and "1 signed" in page
        assert "signed through the front door &lt;3 — ünïcode" in page  # escaped: text, never markup
        assert visitor.post("/", data={"entry": "  "}).status_code == 400

        url = [v for v in container["Config"]["Env"] if v.startswith("DATABASE_URL=")][0].removeprefix("DATABASE_URL=")
        assert db.endpoint is not None
        assert psql(db.endpoint, url, "SELECT entry FROM guestbook") == [ENTRY]  # in PostgreSQL itself

        redeploy = time.monotonic()
        with platform.operator() as api:
            again = api.deploy_template(unique, "guestbook", TemplateDeploy(app="guestbook", env={"TITLE": "Book"}))
        assert (again.created, again.app.revision) == ([], 3)  # the same db, a new revision of the app
        new = ready_revision(platform, unique, "guestbook", 2, revision=3)
        assert {i.container_id for i in new}.isdisjoint({web.container_id})

        def retitled() -> str | None:
            answer = visitor.get("/")
            return answer.text if answer.status_code == 200 and "<h1>Book</h1>" in answer.text else None

        page = wait_for(retitled, what="the new revision's page")
        assert "signed through the front door &lt;3 — ünïcode" in page and "1 signed" in page
        rolled = time.monotonic() - redeploy

    print(
        f"\nguestbook: deployed (images, db, app, binding) in {deployed:.1f} s, serving in {served:.1f} s; "
        f"redeployed and serving its entry again in {rolled:.1f} s"
    )
    assert str(urlsplit(url).password) not in json.dumps([done.model_dump(mode="json"), again.model_dump(mode="json")])
