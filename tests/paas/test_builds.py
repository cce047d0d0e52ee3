"""Builds from source on the real platform: `apps deploy --build DIR` through the API onto the host's engine, the
app answering through the gateway; a failing build leaving the running revision serving; one build per app;
the plan's caps inside a build step; a built image kept to its tenant."""

import io
import subprocess
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tenants.client import ApiError
from tenants.enums import BuildState, InstanceState
from tenants.schemas import AppSpec, BuildRead, TenantCreate
from tests.containers import ready, wait_for
from tests.harness import Daemon

STATIC = "FROM strata/static\nCOPY . /www\n"


@pytest.fixture(autouse=True)
def images_removed(platform: Daemon, unique: str) -> Iterator[None]:
    """After each test its tenants are deleted and their build images, swept by the reconciler, are gone: the
    tests leave none behind (even the session's last, whose platform stops right after)."""
    yield
    with platform.operator() as api:
        for tenant in api.tenants():
            if tenant.name == unique or tenant.name.startswith(f"{unique}-"):
                api.delete_tenant(tenant.name)
    wait_for(lambda: not build_tags(unique) and not build_tags(f"{unique}-*"), what="the tests' build images gone")


def site(directory: Path, page: str, dockerfile: str = STATIC) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "Dockerfile").write_text(dockerfile)
    (directory / "index.html").write_text(page)
    (directory / "secret.txt").write_text("not for the image\n")
    (directory / ".dockerignore").write_text("secret.txt\n")
    return directory


def tar_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def page(daemon: Daemon, host: str, path: str = "/index.html") -> httpx.Response:
    return httpx.get(f"http://{daemon.gateway}{path}", headers={"Host": host}, timeout=10)


def serving(daemon: Daemon, host: str, text: str) -> None:
    wait_for(lambda: (r := page(daemon, host)).status_code == 200 and r.text == text, what=f"the page {text!r}")


def build(
    daemon: Daemon, tenant: str, files: dict[str, str], commit: str | None = None, app: str = "web"
) -> tuple[list[str], BuildRead]:
    lines: list[str] = []
    with daemon.operator() as api:
        for item in api.build(tenant, app, tar_of(files), commit=commit):
            if isinstance(item, BuildRead):
                return lines, item
            lines.append(item)
    raise AssertionError("no build result")


def test_deploy_build_serves_the_directory_and_a_change_redeploys(
    platform: Daemon, unique: str, tmp_path: Path
) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
    host = f"web.{unique}.localhost"
    directory = site(tmp_path / "site", "v1\n")

    done = platform.cli("apps", "deploy", f"{unique}/web", "--build", str(directory))
    assert done.returncode == 0, done.stderr
    assert "FROM strata/static" in done.stdout.splitlines()[0]
    assert f"deployed {unique}/web revision 1" in done.stdout
    ready(platform, unique, "web", 1, revision=1)
    serving(platform, host, "v1\n")
    assert page(platform, host, "/secret.txt").status_code == 404  # left out by .dockerignore

    started = time.monotonic()
    lines, result = build(platform, unique, {"Dockerfile": STATIC, "index.html": "v2\n"}, commit="c0ffee" * 6 + "c0ff")
    serving(platform, host, "v2\n")
    warm = time.monotonic() - started
    print(f"warm rebuild to the new page serving: {warm:.2f} s")
    assert (result.state, result.revision, result.commit) == (BuildState.SUCCEEDED, 2, "c0ffee" * 6 + "c0ff")
    with platform.operator() as api:
        app = api.app(unique, "web")
        assert (app.revision, app.commit, app.image) == (2, result.commit, result.image)
        _, again = build(platform, unique, {"Dockerfile": STATIC, "index.html": "v2\n"}, commit=result.commit)
        assert again.message and again.message.startswith("unchanged") and again.revision == 2
        assert [b.state for b in api.builds(unique, "web")] == ["succeeded"] * 3
        assert "Successfully tagged" in api.build_log(unique, result.id)
        events = [e.action for e in api.events(unique) if e.action.startswith("build.")]
    assert events.count("build.start") == 3 and events.count("build.succeeded") == 3
    assert warm < 10


def test_a_failing_build_exits_non_zero_and_the_running_revision_keeps_serving(
    platform: Daemon, unique: str, tmp_path: Path
) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
    host = f"web.{unique}.localhost"
    first = platform.cli("apps", "deploy", f"{unique}/web", "--build", str(site(tmp_path / "a", "good\n")))
    assert first.returncode == 0, first.stderr
    ready(platform, unique, "web", 1, revision=1)
    serving(platform, host, "good\n")

    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                statuses[client.get(f"http://{platform.gateway}/index.html", headers={"Host": host}).status_code] += 1

    loader = threading.Thread(target=load)
    loader.start()
    try:
        broken = site(tmp_path / "b", "bad\n", "FROM strata/static\nRUN echo about to fail && false\nCOPY . /www\n")
        failed = platform.cli("apps", "deploy", f"{unique}/web", "--build", str(broken))
        time.sleep(1)
    finally:
        stop.set()
        loader.join()
    assert failed.returncode == 1
    assert "about to fail" in failed.stdout
    assert "returned a non-zero code: 1" in failed.stderr
    assert set(statuses) == {200} and statuses[200] > 10
    with platform.operator() as api:
        [last, *_] = api.builds(unique, "web")
        assert last.state == BuildState.FAILED and "non-zero code" in (last.message or "")
        assert api.app(unique, "web").revision == 1
    assert page(platform, host).text == "good\n"


def test_a_second_build_of_an_app_is_refused_at_once_and_the_slot_goes_with_the_first_client(
    platform: Daemon, unique: str
) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
    slow = tar_of({"Dockerfile": f"FROM strata/static\nRUN echo building && sleep 20 && echo {time.time()}\n"})
    with platform.operator() as first:
        running = first.build(unique, "web", slow)
        assert wait_for(lambda: next(running) == "building", what="the first build's step")
        with platform.operator() as second, pytest.raises(ApiError) as refused:
            next(second.build(unique, "web", slow))
        assert refused.value.status == 409 and "a build of web is running" in refused.value.message
        running.close()  # the first client goes away

    def cancelled() -> BuildRead | None:
        with platform.operator() as api:
            found = api.builds(unique, "web")[0]
        return found if found.state == BuildState.FAILED else None

    assert "client went away" in (wait_for(cancelled, what="the build cancelled").message or "")
    _, result = build(platform, unique, {"Dockerfile": STATIC, "index.html": "next\n"})
    assert result.state == BuildState.SUCCEEDED


def test_the_plans_caps_apply_inside_every_build_step(platform: Daemon, unique: str) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))  # builds: 1000 millicores, 1024 MiB
    probe = (
        "FROM strata/static\n"
        f"RUN echo {unique} {time.time()} && "  # no build cache holds this step: it runs
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us "  # cgroup v1
        "2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max\n"  # cgroup v2
    )
    lines, result = build(platform, unique, {"Dockerfile": probe})
    assert result.state == BuildState.SUCCEEDED
    assert str(1024 * 1024 * 1024) in lines
    assert "100000" in lines or "100000 100000" in lines  # 1000 millicores: a quota of one period


def test_no_dockerfile_is_a_clear_error_and_a_built_image_is_its_tenants_alone(
    platform: Daemon, unique: str, tmp_path: Path
) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        api.create_tenant(TenantCreate(name=f"{unique}-b"))
        with pytest.raises(ApiError) as refused:
            next(api.build(unique, "web", tar_of({"index.html": "hi\n"})))
        assert refused.value.status == 422 and "FROM strata/static" in refused.value.message
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "index.html").write_text("hi\n")
    cli = platform.cli("apps", "deploy", f"{unique}/web", "--build", str(empty))
    assert cli.returncode == 2 and "has no Dockerfile" in cli.stderr and "COPY . /www" in cli.stderr

    _, result = build(platform, unique, {"Dockerfile": STATIC, "index.html": "mine\n"})
    assert result.image is not None
    with platform.operator() as api, pytest.raises(ApiError) as theirs:
        api.deploy(f"{unique}-b", "web", AppSpec(image=result.image))
    assert theirs.value.status == 422 and "has no image" in theirs.value.message


def image_id(reference: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", reference], capture_output=True, text=True, check=True
    ).stdout.strip()


def build_tags(tenant: str) -> list[str]:
    listed = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", f"strata-build/{tenant}/*"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


def step_output(lines: list[str], step: str) -> list[str]:
    """The lines a build printed for its step starting with `step` (up to the next step)."""
    start = next(n for n, line in enumerate(lines) if line.startswith("Step ") and step in line)
    end = next((n for n in range(start + 1, len(lines)) if lines[n].startswith("Step ")), len(lines))
    return lines[start + 1 : end]


def test_a_tenants_build_never_uses_another_tenants_cached_step_but_its_own_rebuild_does(
    platform: Daemon, unique: str
) -> None:
    other = f"{unique}-b"
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        api.create_tenant(TenantCreate(name=other, plan="medium"))
    run = f"RUN echo {unique} && head -c8 /dev/urandom | od -An -tx1 > /tmp/secret && cat /tmp/secret"
    dockerfile = f"FROM strata/static\n{run}\nCOPY . /www\n"

    lines_a, built_a = build(platform, unique, {"Dockerfile": dockerfile, "index.html": "a\n"})
    lines_b, built_b = build(platform, other, {"Dockerfile": dockerfile, "index.html": "a\n"})
    assert built_a.state == built_b.state == BuildState.SUCCEEDED and built_a.image and built_b.image
    secret_a, secret_b = step_output(lines_a, f"echo {unique}"), step_output(lines_b, f"echo {unique}")
    assert " ---> Using cache" not in secret_b  # B's step ran: it did not get A's layer (and what it wrote)
    assert [line for line in secret_a if line.startswith(" ") and "-->" not in line] != [
        line for line in secret_b if line.startswith(" ") and "-->" not in line
    ]
    assert image_id(built_a.image) != image_id(built_b.image)

    started = time.monotonic()
    lines_warm, warm = build(platform, unique, {"Dockerfile": dockerfile, "index.html": "a, changed\n"})
    took = time.monotonic() - started
    print(f"warm rebuild after a one-line change: {took:.2f} s")
    assert warm.state == BuildState.SUCCEEDED and warm.revision == 2
    assert " ---> Using cache" in step_output(lines_warm, f"echo {unique}")  # its own cache, still
    assert took < 10


def test_a_deleted_tenants_build_images_are_removed_with_it(platform: Daemon, unique: str) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
    for page_text in ("one\n", "two\n"):
        _, result = build(platform, unique, {"Dockerfile": STATIC, "index.html": page_text})
        assert result.state == BuildState.SUCCEEDED
    ready(platform, unique, "web", 1, revision=2)
    assert len(build_tags(unique)) == 2
    with platform.operator() as api:
        api.delete_tenant(unique)
    wait_for(lambda: not build_tags(unique), what="the deleted tenant's build images removed")


def test_an_image_asking_for_capabilities_never_granted_gets_no_container(platform: Daemon, unique: str) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
    admin = 'FROM strata/static\nLABEL strata.capabilities="SYS_ADMIN"\nCOPY . /www\n'
    bind = 'FROM strata/static\nLABEL strata.capabilities="NET_BIND_SERVICE"\nCOPY . /www\n'
    _, refused = build(platform, unique, {"Dockerfile": admin, "index.html": "admin\n"}, app="admin")
    _, granted = build(platform, unique, {"Dockerfile": bind, "index.html": "bind\n"}, app="bind")
    assert refused.state == granted.state == BuildState.SUCCEEDED

    ready(platform, unique, "bind", 1, revision=1)
    serving(platform, f"bind.{unique}.localhost", "bind\n")

    def problem() -> str | None:
        with platform.operator() as api:
            return api.app(unique, "admin").problem

    reason = wait_for(problem, what="the refused app's problem")
    assert "SYS_ADMIN" in reason and "never grants" in reason
    with platform.operator() as api:
        assert [i for i in api.instances(unique, "admin") if i.state == InstanceState.READY] == []
    running = subprocess.run(
        ["docker", "ps", "--filter", f"label=strata.tenant={unique}", "--format", '{{.Label "strata.app"}}'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert running == ["bind"]


def test_a_build_from_another_tenants_build_image_is_refused_and_from_the_platforms_or_its_own_works(
    platform: Daemon, unique: str
) -> None:
    tenant_b = f"{unique}-b"
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
        api.create_tenant(TenantCreate(name=tenant_b))
    _, theirs = build(platform, unique, {"Dockerfile": STATIC, "index.html": "a's\n"})
    assert theirs.state == BuildState.SUCCEEDED and theirs.image is not None
    with platform.operator() as api, pytest.raises(ApiError) as refused:
        next(api.build(tenant_b, "web", tar_of({"Dockerfile": f"FROM {theirs.image}\nRUN cat /www/index.html\n"})))
    assert refused.value.status == 422
    assert f"FROM {theirs.image}: not one of your images nor the platform's" in refused.value.message
    assert f"strata apps deploy --image {theirs.image}" in refused.value.message
    with platform.operator() as api:
        assert [b.tenant for b in api.builds(tenant_b)] == []

    _, own = build(platform, tenant_b, {"Dockerfile": STATIC, "index.html": "b's\n"})
    assert own.state == BuildState.SUCCEEDED and own.image is not None
    _, again = build(
        platform, tenant_b, {"Dockerfile": f"FROM {own.image}\nCOPY . /www\n", "index.html": "b2\n"}, app="api"
    )
    assert again.state == BuildState.SUCCEEDED, again.message
