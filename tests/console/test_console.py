"""The console driven by Textual's Pilot against a real daemon: what it shows, and what its keys do."""

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label, Markdown

from tenants.enums import MemberRole, Role
from tenants.schemas import AppSpec, MemberCreate, TenantCreate, TokenCreate, VolumeCreate, VolumeMount
from tests.containers import ready
from tests.harness import Daemon
from tui.app import StrataConsole
from tui.dao import ConsoleData
from tui.screens.dialogs import FormDialog
from tui.screens.overview import OverviewScreen
from tui.screens.table import FittingTable
from tui.screens.tenant import TenantScreen

REFRESH = 0.3


def drive(
    daemon: Daemon,
    token: str,
    steps: Callable[[StrataConsole, Pilot], Awaitable[None]],
    size: tuple[int, int] = (160, 40),
) -> None:
    async def run() -> None:
        with daemon.client(token) as client:
            app = StrataConsole(ConsoleData(client), refresh_seconds=REFRESH)
            async with app.run_test(size=size) as pilot:
                await steps(app, pilot)

    asyncio.run(run())


async def until(pilot: Pilot, probe: Callable[[], object], timeout: float = 30, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"the console never showed {what}")


def rows(app: StrataConsole, table_id: str) -> list[list[str]]:
    """The table's rows as text, every column of them (shown or hidden by the width), in table order."""
    table = app.screen.query_one(f"#{table_id}", DataTable)
    if isinstance(table, FittingTable):
        return [[str(cell) for cell in cells] for _, cells in table.rows_shown]
    return [[str(cell) for cell in table.get_row_at(index)] for index in range(table.row_count)]


def toasts(app: StrataConsole) -> list[str]:
    return [str(toast.message) for toast in app._notifications]  # noqa: SLF001 (Textual keeps them there)


def test_overview_filter_and_drill_down_to_a_tenants_three_layers(platform: Daemon, unique: str) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        api.create_tenant(TenantCreate(name=f"{unique}-x"))
        api.deploy(unique, "web", AppSpec(image="strata/hello", replicas=2, health_path="/healthz", memory_mib=64))
    ready(platform, unique, "web", 2)

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        await until(pilot, lambda: any(r[0] == unique for r in rows(app, "tenants")), what="the tenant")
        await pilot.press("slash", *f"{unique}-x", "enter")
        await until(pilot, lambda: [r[0] for r in rows(app, "tenants")] == [f"{unique}-x"], what="the filter")
        await pilot.press("escape")
        await until(pilot, lambda: len(rows(app, "tenants")) >= 2, what="the whole list again")
        table = app.screen.query_one("#tenants", DataTable)
        table.move_cursor(row=table.get_row_index(unique))
        mine = rows(app, "tenants")[table.get_row_index(unique)]
        assert mine[:6] == [unique, "medium", "shared", "active", "1", "2/2"]

        await pilot.press("enter")
        assert isinstance(app.screen, TenantScreen)
        await until(pilot, lambda: len(rows(app, "paas")) == 3, what="the app and its instances")
        paas = rows(app, "paas")
        assert "web" in paas[0][0] and paas[0][2] == "2/2"
        assert {r[2] for r in paas[1:]} == {"ready"}
        assert rows(app, "iaas")[0][:3] == ["◆", "local", "ready"]  # the app's instances run there
        assert rows(app, "iaas")[0][3:6] == ["2", "500m", "128Mi"]  # the tenant's share: 2 × (250m, 64Mi)
        assert rows(app, "saas")[0][1] == f"http://web.{unique}.localhost"

        await pilot.press("plus")  # scale up from the UI...
        await until(
            pilot,
            lambda: len(rows(app, "paas")) == 4 and rows(app, "paas")[0][2] == "3/3",
            what="a third ready instance",
        )  # ...and see the instances change
        await pilot.press("escape")
        assert isinstance(app.screen, OverviewScreen)

    drive(platform, platform.operator_token, steps)
    with platform.operator() as api:
        assert api.app(unique, "web").replicas == 3


def test_a_volume_shows_under_the_tenants_layers_with_its_use_and_the_app_that_mounts_it(
    platform: Daemon, unique: str
) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
        api.create_volume(unique, VolumeCreate(name="data", size_mib=32))
        mount = VolumeMount(volume="data", path="/srv/data")
        api.deploy(unique, "web", AppSpec(image="strata/hello", replicas=1, memory_mib=64, volumes=[mount]))
    ready(platform, unique, "web", 1)

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        await until(pilot, lambda: any(r[0] == unique for r in rows(app, "tenants")), what="the tenant")
        table = app.screen.query_one("#tenants", DataTable)
        table.move_cursor(row=table.get_row_index(unique))
        await pilot.press("enter")
        await until(pilot, lambda: rows(app, "volumes"), what="the volume")
        assert app.screen.query_one("#volumes-pane").display
        [volume] = rows(app, "volumes")
        assert volume[:3] == ["◆", "data", "32 MiB"]  # marked: web, under the cursor, mounts it
        assert re.fullmatch(r"\d+ MiB \(\d+%\)", volume[3]), volume[3]  # its node says how much is used
        assert volume[4:] == ["web", "/srv/data", "local"]
        assert rows(app, "paas")[0][0] == "web ⛁ data"

    drive(platform, platform.operator_token, steps)


def test_a_quota_refusal_is_shown_as_the_api_words_it(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
        api.deploy(unique, "web", AppSpec(image="strata/hello", replicas=6))

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        await until(pilot, lambda: any(r[0] == unique for r in rows(app, "tenants")), what="the tenant")
        table = app.screen.query_one("#tenants", DataTable)
        table.move_cursor(row=table.get_row_index(unique))
        await pilot.press("enter")
        await until(pilot, lambda: rows(app, "paas"), what="the app")
        assert not app.screen.query_one("#volumes-pane").display  # a platform without volumes (409): none, no error
        await pilot.press("plus")
        await until(pilot, lambda: any("instances quota exceeded" in t for t in toasts(app)), what="the refusal")

    drive(daemon, daemon.operator_token, steps)
    with daemon.operator() as api:
        assert api.app(unique, "web").replicas == 6


def test_a_tenant_token_sees_its_tenant_only(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
        api.create_tenant(TenantCreate(name=f"{unique}-other"))
        token = api.create_token(TokenCreate(role=Role.TENANT, tenant=unique)).token

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        await until(pilot, lambda: rows(app, "tenants"), what="a tenant")
        await pilot.pause(REFRESH * 3)
        assert [r[0] for r in rows(app, "tenants")] == [unique]
        assert not app.data.is_operator

        offered = {active.binding.description for active in app.screen.active_bindings.values()}
        assert "Filter" in offered and not offered & {"New tenant", "Suspend/resume", "Delete"}
        await pilot.press("n", "p", "ctrl+d")
        assert isinstance(app.screen, OverviewScreen)
        await pilot.press("question_mark")
        assert "new tenant" not in str(app.screen.query_one(Markdown).source)
        await pilot.press("escape", "colon", *"nodes", "enter")
        assert "unknown command 'nodes'" in str(app.screen.query_one("#error", Label).render())
        await pilot.press("escape", "enter")
        await until(pilot, lambda: isinstance(app.screen, TenantScreen), what="its tenant screen")
        iaas = app.screen.query_one("#iaas", FittingTable)
        shown = [column.label for column in iaas.spec]
        assert shown == ["", "NODE", "TENANT INST", "TENANT CPU", "TENANT MEM", "TENANT DISKS"]  # no node's own

    drive(daemon, token, steps)


def test_a_viewer_is_offered_no_change_and_told_why_when_it_tries(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
        api.deploy(unique, "web", AppSpec(image="strata/hello"))
        api.add_member(unique, MemberCreate(name="vic", role=MemberRole.VIEWER))
        token = api.create_token(TokenCreate(role=Role.TENANT, tenant=unique, member="vic")).token

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        await until(pilot, lambda: rows(app, "tenants"), what="a tenant")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TenantScreen) and rows(app, "paas"), what="its apps")
        await pilot.pause(REFRESH * 2)
        disabled = {b.binding.description for b in app.screen.active_bindings.values() if not b.enabled}
        assert {"Scale +1", "Scale -1", "Restart", "Deploy", "Shell", "Delete app"} <= disabled
        assert "Logs" not in disabled
        await pilot.press("plus", "ctrl+d")
        await pilot.pause(REFRESH * 3)
        assert isinstance(app.screen, TenantScreen)  # no confirmation was asked: nothing was offered
        assert f"vic is a viewer of {unique!r}: scaling takes a developer" in toasts(app)
        assert f"vic is a viewer of {unique!r}: deleting an app takes an owner" in toasts(app)
        await pilot.press("escape", "colon", *"catalog", "enter")
        await until(pilot, lambda: rows(app, "catalog"), what="the catalog")
        await pilot.press("enter")
        await pilot.pause(REFRESH)
        assert f"vic is a viewer of {unique!r}: deploying from the catalog takes a developer" in toasts(app)
        assert not isinstance(app.screen, FormDialog)

    drive(daemon, token, steps)
    with daemon.operator() as api:
        assert api.app(unique, "web").replicas == 1


def form_error(app: StrataConsole) -> str:
    assert isinstance(app.screen, FormDialog), app.screen
    return str(app.screen.query_one("#error", Label).render())


async def submit(pilot: Pilot, **values: str) -> None:
    """Fill the open form's fields by id and press Enter."""
    for field, value in values.items():
        pilot.app.screen.query_one(f"#{field}", Input).value = value
    pilot.app.screen.query_one(f"#{next(iter(values))}", Input).focus()
    await pilot.press("enter")


async def refused(pilot: Pilot, words: str, **values: str) -> None:
    await submit(pilot, **values)
    await until(pilot, lambda: words in form_error(pilot.app), what=f"{words!r} in the form")  # type: ignore[arg-type]


def test_the_new_tenant_form_says_what_is_wrong_and_sends_nothing(daemon: Daemon, unique: str) -> None:
    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        await until(pilot, lambda: app.screen.sub_title, what="the overview")
        await pilot.press("n")
        await refused(pilot, "'Bad_Name' is not a DNS label", name="Bad_Name")
        await refused(pilot, "reserved", name="admin")
        await refused(pilot, "no plan named 'huge'", name=unique, plan="huge")  # the API's refusal, in the form
        await pilot.press("escape")
        assert isinstance(app.screen, OverviewScreen)
        await pilot.press("n")
        await submit(pilot, name=unique, plan="medium")
        await until(pilot, lambda: f"tenant {unique} created" in toasts(app), what="the new tenant")

    drive(daemon, daemon.operator_token, steps)
    with daemon.operator() as api:
        assert api.tenant(unique).plan.name == "medium"
        assert [e.action for e in api.events(unique, limit=10)] == ["tenant.create"]


def test_the_deploy_form_says_what_is_wrong_and_sends_nothing(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        await until(pilot, lambda: any(r[0] == unique for r in rows(app, "tenants")), what="the tenant")
        table = app.screen.query_one("#tenants", DataTable)
        table.move_cursor(row=table.get_row_index(unique))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TenantScreen), what="the tenant screen")
        await pilot.press("d")
        await refused(pilot, "is not a DNS label", app="[/b]")  # markup, too, is only text
        await refused(pilot, "not an image reference", app="web", image="Not An Image")
        await refused(pilot, "replicas must be a whole number", image="strata/hello", replicas="many")
        await refused(pilot, "less than or equal to 100", replicas="101")
        await refused(pilot, "quota", replicas="99")  # the API's refusal, in the form
        await pilot.press("escape")
        assert isinstance(app.screen, TenantScreen)

    drive(daemon, daemon.operator_token, steps)
    with daemon.operator() as api:
        assert api.apps(unique) == []


def test_the_catalog_form_says_what_is_wrong_and_sends_nothing(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        await until(pilot, lambda: rows(app, "tenants"), what="the overview")
        await pilot.press("colon", *"catalog", "enter")
        await until(pilot, lambda: rows(app, "catalog"), what="the catalog")
        await pilot.press("enter")
        await refused(pilot, "'Bad_Name' is not a DNS label", line="Bad_Name")
        await submit(pilot, line=unique)
        await until(pilot, lambda: app.screen.query("#env-GREETING"), what="the hello form")
        await refused(pilot, "replicas must be a whole number", replicas="-1")
        await refused(pilot, "GREETING", replicas="1", **{"env-GREETING": "x" * 5000})
        await pilot.press("escape")

    drive(daemon, daemon.operator_token, steps)
    with daemon.operator() as api:
        assert api.apps(unique) == []


def test_the_api_going_away_shows_a_banner(tmp_path, unique: str) -> None:  # type: ignore[no-untyped-def]
    from tests.harness import start_daemon

    daemon = start_daemon(tmp_path / "home")
    token = daemon.operator_token

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        await until(
            pilot,
            lambda: app.screen.query_one("#tenants", DataTable).row_count == 0 and app.screen.sub_title,
            what="the first paint",
        )
        daemon.stop()
        banner = app.screen.query_one("#banner")
        await until(pilot, lambda: banner.has_class("shown"), what="the banner")
        assert "not running" in str(banner.render())

    try:
        drive(daemon, token, steps)
    finally:
        daemon.stop()


def test_a_thousand_tenants_render_and_filter(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Against the real daemon; how fast is `bench/console.py`'s to say (a timed test fails on a busy machine)."""
    from tests.harness import start_daemon

    daemon = start_daemon(tmp_path / "home")
    try:
        with daemon.operator() as api:
            for index in range(1000):
                api.create_tenant(TenantCreate(name=f"tenant-{index:04d}"))

        async def steps(app: StrataConsole, pilot: Pilot) -> None:
            await until(pilot, lambda: len(rows(app, "tenants")) == 1000, what="1,000 tenants")
            await pilot.press("slash", *"tenant-09", "enter")
            await until(pilot, lambda: len(rows(app, "tenants")) == 100, what="the filtered 100")
            assert {row[0] for row in rows(app, "tenants")} == {f"tenant-{index:04d}" for index in range(900, 1000)}

        drive(daemon, daemon.operator_token, steps, size=(100, 30))
    finally:
        daemon.stop()


def test_deploying_from_the_catalog_through_its_form(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        await until(pilot, lambda: rows(app, "tenants"), what="the overview")
        await pilot.press("colon", *"catalog", "enter")
        await until(pilot, lambda: rows(app, "catalog"), what="the catalog")
        assert [r[0] for r in rows(app, "catalog")] == ["hello", "static-site", "guestbook"]
        await pilot.press("enter")  # hello; an operator is asked for the tenant
        await pilot.press(*unique, "enter")
        await pilot.pause(0.2)
        form = app.screen
        form.query_one("#app").value = "greeter"
        form.query_one("#env-GREETING").value = "bonjour"
        await pilot.press("enter")
        await until(pilot, lambda: any("deployed" in t for t in toasts(app)), what="the deploy")

    drive(daemon, daemon.operator_token, steps)
    with daemon.operator() as api:
        deployed = api.app(unique, "greeter")
    assert (deployed.image, deployed.replicas, deployed.env) == ("strata/hello", 2, {"GREETING": "bonjour"})


def test_the_guestbook_from_the_catalog_gets_its_database_made_and_bound_and_shows_it(
    platform: Daemon, unique: str
) -> None:
    """One form: refused whole first (the plan's instances, its db counted), then its database made and bound, and
    the tenant's screen showing the service ready, bound to the app."""
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="small"))

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        await until(pilot, lambda: any(r[0] == unique for r in rows(app, "tenants")), what="the tenant")
        table = app.screen.query_one("#tenants", DataTable)
        table.move_cursor(row=table.get_row_index(unique))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TenantScreen), what="the tenant screen")
        await pilot.press("colon", *"catalog", "enter")  # from a tenant's screen: deploys there, without asking
        await until(pilot, lambda: rows(app, "catalog"), what="the catalog")
        await pilot.press("down", "down", "enter")
        await until(pilot, lambda: app.screen.query("#env-TITLE"), what="the guestbook form")
        await refused(pilot, "instances quota exceeded", replicas="6")  # 6 fit, but not with db's
        with platform.operator() as api:
            assert (api.apps(unique), api.services(unique)) == ([], [])
        await submit(pilot, replicas="1", **{"env-TITLE": "Visitors"})
        await until(pilot, lambda: f"{unique}/guestbook deployed, bound to db" in toasts(app), 600, "the deploy")
        await pilot.press("escape")  # from the catalog (a `:` command) back to the overview, then to the tenant
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen), what="the overview again")
        table = app.screen.query_one("#tenants", DataTable)
        table.move_cursor(row=table.get_row_index(unique))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TenantScreen), what="the tenant screen again")
        await until(
            pilot,
            lambda: [r[1:4] + r[6:7] for r in rows(app, "services")] == [["db", "postgres", "ready", "guestbook"]],
            120,
            "db ready, bound to guestbook",
        )
        paas = {r[0] for r in rows(app, "paas")}
        assert {"guestbook → db", "db ⛃ postgres"} <= paas

    drive(platform, platform.operator_token, steps)
    with platform.operator() as api:
        [db] = api.services(unique)
        assert (db.bound_to, api.app(unique, "guestbook").env) == (["guestbook"], {"TITLE": "Visitors"})


def test_logs_stream_and_search(platform: Daemon, unique: str) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        api.deploy(unique, "web", AppSpec(image="strata/hello", replicas=2, memory_mib=64))
    first, _ = ready(platform, unique, "web", 2)

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        from textual.widgets import Log

        await until(pilot, lambda: any(r[0] == unique for r in rows(app, "tenants")), what="the tenant")
        table = app.screen.query_one("#tenants", DataTable)
        table.move_cursor(row=table.get_row_index(unique))
        await pilot.press("enter")
        await until(pilot, lambda: len(rows(app, "paas")) == 3, what="the instances")
        await pilot.press("l")
        log = app.screen.query_one("#log", Log)
        await until(pilot, lambda: log.line_count >= 2, what="both instances' first lines")
        assert all(line.startswith("[") for line in log.lines)
        await pilot.press("slash", *first.id)
        await until(pilot, lambda: log.line_count == 1 and first.id in log.lines[0], what="the search")
        await pilot.press("escape", "escape")
        assert app.screen.query("#paas")

    drive(platform, platform.operator_token, steps)
