"""The console on `SyntheticData` (no daemon): how it lays out, titles and words what it shows, and that no input
of its prompts and filters can crash it."""

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Header, Input, Label, Log

from tenants.catalog import TemplateDeploy
from tenants.client import ApiError
from tenants.enums import BuildState
from tenants.errors import Invalid
from tenants.schemas import BuildRead
from tui.app import StrataConsole
from tui.dao import TenantDetail
from tui.model import Column, fit
from tui.screens.build_log import BuildLogScreen
from tui.screens.dialogs import EventDialog, FormDialog
from tui.screens.logs import LogsScreen
from tui.screens.table import FittingTable
from tui.screens.tenant import BUILDS, TenantScreen
from tui.synthetic import SyntheticData

PANES = ("iaas", "paas", "saas")


def offline(
    steps: Callable[[StrataConsole, Pilot], Awaitable[None]],
    size: tuple[int, int] = (160, 40),
    tenants: int = 12,
    data: SyntheticData | None = None,
) -> None:
    async def run() -> None:
        app = StrataConsole(data or SyntheticData(tenants), refresh_seconds=3600)  # type: ignore[arg-type]
        async with app.run_test(size=size) as pilot:
            await painted(pilot, "#tenants")
            await steps(app, pilot)
        assert app.return_code in (None, 0) and app._exception is None  # noqa: SLF001 (how Textual keeps a crash)

    asyncio.run(run())


async def painted(pilot: Pilot, table: str) -> None:
    for _ in range(100):
        if pilot.app.screen.query(table) and pilot.app.screen.query_one(table, DataTable).row_count:
            await pilot.pause(0.1)
            return
        await pilot.pause(0.05)
    raise AssertionError(f"{table} never filled")


async def open_tenant(pilot: Pilot) -> TenantScreen:
    await pilot.press("enter")
    await painted(pilot, "#paas")
    assert isinstance(pilot.app.screen, TenantScreen)
    return pilot.app.screen


def error_of(app: StrataConsole) -> str:
    return str(app.screen.query_one("#error", Label).render())


def test_side_by_side_no_column_is_cut_without_a_note_under_its_pane() -> None:
    for width in (160, 250):

        async def steps(app: StrataConsole, pilot: Pilot, width: int = width) -> None:
            screen = await open_tenant(pilot)
            for pane in (*PANES, "builds", "volumes", "services"):
                table = screen.query_one(f"#{pane}", FittingTable)
                shown = [str(column.label) for column in table.ordered_columns]
                assert sum(column.get_render_width(table) for column in table.ordered_columns) <= table.size.width
                assert not table.show_horizontal_scrollbar  # no stray scrollbar glyphs mid-pane
                hidden = [c.label for c in table.spec if c.label not in shown and not c.sparse]  # sparse: all empty
                note = str(screen.query_one(f"#{pane}-pane").border_subtitle or "")
                assert all(label in note for label in hidden), (width, pane, hidden, note)

        offline(steps, size=(width, 40))


def test_the_iaas_pane_shows_the_tenants_share_beside_the_nodes_total() -> None:
    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        screen = await open_tenant(pilot)
        table = screen.query_one("#iaas", FittingTable)
        labels = [column.label for column in table.spec]
        local, vm = (dict(zip(labels, cells, strict=True)) for _, cells in table.rows_shown)
        # 18 instances (10 apps of 2, but app-0 with its volume of 1, and the service db of 1) of 250m and 128Mi
        # each, but db's of 500m and 256Mi; 12 such tenants
        assert (str(local["TENANT INST"]), str(local["TENANT CPU"]), str(local["TENANT MEM"])) == (
            "18",
            "4750m",
            "2432Mi",
        )
        assert (str(local["NODE INST"]), str(local["NODE CPU"])) == ("216", "57000m/64000m")
        assert str(local["TENANT DISKS"]) == "data 1.0 GiB, db 256 MiB"
        # no instance on vm-1, but a volume: a disk of that VM
        assert (str(vm["NODE"]), str(vm["TENANT INST"]), str(vm["TENANT DISKS"])) == ("vm-1", "0", "scratch 2.0 GiB")

    offline(steps, size=(250, 40))


def test_the_title_follows_the_screen_back_from_the_logs() -> None:
    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        await open_tenant(pilot)
        await pilot.press("l")
        assert isinstance(app.screen, LogsScreen)
        assert app.screen.query_one(Header).screen_sub_title == "logs of tenant-0000/app-0"
        await pilot.press("escape")
        assert app.screen.query_one(Header).screen_sub_title == "tenant tenant-0000"

    offline(steps)


def test_counts_are_pluralised_properly() -> None:
    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        assert app.screen.query_one(Header).screen_sub_title.startswith("1 tenant ·")
        await pilot.press("colon", *"events", "enter")
        await painted(pilot, "#events")
        assert app.screen.query_one(Header).screen_sub_title == "audit log · 1 event"

    offline(steps, tenants=1)


def test_enter_on_an_event_shows_it_whole() -> None:
    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        await pilot.press("colon", *"events", "enter")
        await painted(pilot, "#events")
        await pilot.press("enter")
        assert isinstance(app.screen, EventDialog)
        assert '"plan": "medium"' in str(app.screen.query_one(".label").render())
        await pilot.press("escape")
        assert app.screen.query("#events")

    offline(steps)


def test_every_field_of_the_catalog_form_is_labelled() -> None:
    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        await pilot.press("colon", *"catalog", "enter")
        await painted(pilot, "#catalog")
        await pilot.press("enter", *"tenant-0000", "enter")  # an operator is asked for the tenant
        await pilot.pause(0.2)
        assert isinstance(app.screen, FormDialog)
        labels = [str(label.render()) for label in app.screen.query(".label")]
        assert [label.split(" ")[0] for label in labels] == ["App", "Image", "Replicas", "GREETING"]

    offline(steps)


def test_bad_commands_and_tenant_names_are_refused_inside_their_prompts() -> None:
    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        await pilot.press("colon", "enter")  # nothing typed: the prompt just closes
        assert not isinstance(app.screen, FormDialog)
        await pilot.press("colon", *":", "enter")
        await pilot.press("colon", *"nosuch", "enter")
        assert isinstance(app.screen, FormDialog)
        assert "unknown command 'nosuch'" in error_of(app)
        await pilot.press("escape")

        await pilot.press("colon", *"catalog", "enter")
        await painted(pilot, "#catalog")
        await pilot.press("enter", *"Bad_Name", "enter")
        assert isinstance(app.screen, FormDialog)
        assert "is not a DNS label" in error_of(app)

    offline(steps)


def test_filters_and_searches_take_any_text() -> None:
    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        await pilot.press("slash", *"[/b] Bad_Name [", "enter")
        await pilot.pause(0.3)
        assert app.screen.query_one("#tenants", DataTable).row_count == 0
        await pilot.press("escape")
        await painted(pilot, "#tenants")
        await open_tenant(pilot)
        await pilot.press("l", "slash", *"[/b] ((", "enter")
        assert app.screen.query_one("#search", Input).value == "[/b] (("

    offline(steps)


def test_a_refused_action_is_shown_not_raised() -> None:
    def refused(data: object) -> None:
        raise Invalid("replicas must be at most 100", field="replicas")

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        app.act(refused, "never said")
        await pilot.pause(0.5)
        assert [str(toast.message) for toast in app._notifications] == ["replicas must be at most 100"]  # noqa: SLF001

    offline(steps)


@pytest.mark.parametrize(
    ("widths", "room", "kept"),
    [
        ([10, 10, 10], 30, [0, 1, 2]),  # all fit
        ([10, 10, 10], 25, [0, 2]),  # priorities 0, 2, 1: the least important (1) goes
        ([10, 30, 5], 20, [0, 2]),  # a wide one gives way to a narrower, less important one
        ([50, 10, 10], 20, [0]),  # the most important stays even when it alone is too wide
    ],
)
def test_fit_keeps_the_most_important_columns_that_fit(widths: list[int], room: int, kept: list[int]) -> None:
    columns = [Column("A", 0), Column("B", 2), Column("C", 1)]
    assert fit(columns, widths, room) == kept


def test_the_paas_pane_says_why_an_app_is_not_as_asked_only_when_one_is_not() -> None:
    class Troubled(SyntheticData):
        def tenant(self, name: str) -> TenantDetail:
            detail = super().tenant(name)
            detail.apps[0].problem = "image nginx:latest not found"
            return detail

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        screen = await open_tenant(pilot)
        paas = screen.query_one("#paas", FittingTable)
        assert [str(c.label) for c in paas.ordered_columns][-1] == "WHY"
        assert str(paas.get_row_at(0)[-1]) == "image nginx:latest not found"

    async def run() -> None:
        app = StrataConsole(Troubled(3), refresh_seconds=3600)  # type: ignore[arg-type]
        async with app.run_test(size=(250, 40)) as pilot:
            await painted(pilot, "#tenants")
            await steps(app, pilot)

    asyncio.run(run())


def test_the_builds_pane_shows_the_latest_builds_newest_first_a_failed_one_in_red() -> None:
    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        screen = await open_tenant(pilot)
        builds = screen.query_one("#builds", FittingTable)
        assert screen.query_one("#builds-pane").display
        assert [key for key, _ in builds.rows_shown] == ["build:3", "build:2", "build:1"]
        row = dict(zip([c.label for c in BUILDS], builds.rows_shown[1][1], strict=True))
        assert (str(row["APP"]), str(row["STATE"]), str(row["SOURCE"]), str(row["TOOK"])) == (
            "app-1", "failed", "upload", "48s"
        )  # fmt: skip
        assert isinstance(row["STATE"], Text) and "red" in str(row["STATE"].style)
        assert isinstance(row["MESSAGE"], Text) and "red" in str(row["MESSAGE"].style)
        assert str(row["MESSAGE"]).startswith("the build failed: The command")
        running = dict(zip([c.label for c in BUILDS], builds.rows_shown[0][1], strict=True))
        assert (str(running["STATE"]), str(running["COMMIT"]), str(running["AGE"])) == ("building", "4e1d2c9", "1m")

    offline(steps, size=(250, 40))


def test_a_tenant_that_never_built_has_no_builds_pane() -> None:
    class Unbuilt(SyntheticData):
        def builds(self, tenant: str, app: str | None = None, limit: int = 100) -> list[BuildRead]:
            return []

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        screen = await open_tenant(pilot)
        assert not screen.query_one("#builds-pane").display

    offline(steps, data=Unbuilt(3))


def test_l_opens_the_log_of_the_build_under_the_cursor_and_still_the_apps_logs_from_the_paas_pane() -> None:
    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        screen = await open_tenant(pilot)
        screen.query_one("#builds", FittingTable).focus()
        await pilot.press("down", "l")
        await painted_log(pilot)
        assert isinstance(app.screen, BuildLogScreen)
        assert app.screen.query_one(Header).screen_sub_title == "build 2 of tenant-0000/app-1 · failed"
        lines = [line for line in app.screen.query_one("#log", Log).lines if line]
        assert "/bin/sh: make: not found" in lines and lines[-1].startswith("failed: the build failed")
        await pilot.press("escape")
        assert app.screen is screen
        screen.query_one("#paas", FittingTable).focus()
        await pilot.press("l")
        assert isinstance(app.screen, LogsScreen)

    offline(steps)


def test_a_running_builds_log_follows_it_until_it_ends() -> None:
    class Building(SyntheticData):
        def __init__(self, tenants: int) -> None:
            super().__init__(tenants)
            self.log_reads = 0

        def builds(self, tenant: str, app: str | None = None, limit: int = 100) -> list[BuildRead]:
            builds = super().builds(tenant, app, limit)
            if self.ticks:  # the build of app-2 has ended meanwhile
                builds[0] = builds[0].model_copy(update={"state": BuildState.SUCCEEDED, "revision": 2})
            return builds

        def build_log(self, tenant: str, build_id: int) -> str:
            self.log_reads += 1
            return super().build_log(tenant, build_id) + (
                "Step 2/3 : COPY . /srv\nsucceeded: revision 2\n" * bool(self.ticks)
            )

    data = Building(3)

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        screen = await open_tenant(pilot)
        screen.query_one("#builds", FittingTable).focus()
        await pilot.press("enter")  # Enter opens it too
        await painted_log(pilot)
        assert isinstance(app.screen, BuildLogScreen)
        assert app.screen.query_one(Header).screen_sub_title.endswith("· building")
        assert app.screen.query_one("#log", Log).lines[0] == "Step 1/3 : FROM strata/static"
        data.tick()
        app.refresh_data()
        await pilot.pause(0.3)
        assert app.screen.query_one(Header).screen_sub_title == "build 3 of tenant-0000/app-2 · succeeded"
        lines = app.screen.query_one("#log", Log).lines
        assert [line for line in lines if line] == [  # what was added, written once
            "Step 1/3 : FROM strata/static", "Step 2/3 : COPY . /srv", "succeeded: revision 2"
        ]  # fmt: skip
        reads = data.log_reads
        app.refresh_data()
        await pilot.pause(0.3)
        assert data.log_reads == reads  # an ended build's log is not fetched again

    offline(steps, data=data)


def test_the_paas_pane_shows_an_apps_image_pull_progress_figures_first() -> None:
    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        screen = await open_tenant(pilot)
        paas = dict(screen.query_one("#paas", FittingTable).rows_shown)
        why = str(paas["app:app-3"][-1])
        assert why.startswith("pulling 12.0 of 48.0 MiB (25%) registry"), why  # the cut takes the reference
        assert str(paas["app:app-2"][-1]) == ""

    offline(steps, size=(250, 40))


async def painted_log(pilot: Pilot) -> None:
    for _ in range(100):
        screen = pilot.app.screen
        if isinstance(screen, BuildLogScreen) and screen.text is not None:
            return
        await pilot.pause(0.05)
    raise AssertionError("the build's log never showed")


def test_the_volumes_pane_shows_each_volumes_size_use_and_the_app_that_mounts_it_where() -> None:
    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        screen = await open_tenant(pilot)
        assert screen.query_one("#volumes-pane").display
        rows = dict(screen.query_one("#volumes", FittingTable).rows_shown)
        assert list(rows) == ["data", "scratch", "db"]  # db: the service's
        data, scratch = ([str(cell) for cell in rows[name]] for name in ("data", "scratch"))
        assert data == ["◆", "data", "1.0 GiB", "870 MiB (85%)", "app-0", "/var/lib/app", "local"]  # app-0's: marked
        assert scratch == ["", "scratch", "2.0 GiB", "-", "-", "-", "vm-1"]  # mounted by none: its use unknown
        used = rows["data"][3]
        assert isinstance(used, Text) and "yellow" in str(used.style)  # past 70% full
        paas = dict(screen.query_one("#paas", FittingTable).rows_shown)
        assert (str(paas["app:app-0"][0]), str(paas["app:app-3"][0])) == ("app-0 ⛁ data", "app-3")

        await pilot.press("down", "down")  # app-0's one instance, then app-1: the volume is no longer marked
        await pilot.pause(0.2)
        assert [str(cells[0]) for _, cells in screen.query_one("#volumes", FittingTable).rows_shown] == ["", "", ""]
        await pilot.press("up")
        await pilot.pause(0.2)
        assert str(screen.query_one("#volumes", FittingTable).rows_shown[0][1][0]) == "◆"

    offline(steps, size=(250, 40))


@pytest.mark.parametrize(
    ("builds", "volumes", "services", "height"),
    [
        (True, True, True, 7),  # 3 builds, 3 volumes, 1 service; 4 lines around
        (True, False, False, 7),
        (False, True, False, 7),
        (False, False, True, 5),
        (False, False, False, 0),
    ],
)
def test_the_builds_volumes_and_services_panes_show_only_when_the_tenant_has_some(
    builds: bool, volumes: bool, services: bool, height: int
) -> None:
    class Some(SyntheticData):
        def tenant(self, name: str) -> TenantDetail:
            detail = super().tenant(name)
            return dataclasses.replace(
                detail,
                builds=detail.builds if builds else [],
                volumes=detail.volumes if volumes else [],
                services=detail.services if services else [],
            )

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        screen = await open_tenant(pilot)
        shown = {pane: screen.query_one(f"#{pane}-pane") for pane in ("builds", "volumes", "services")}
        assert [pane.display for pane in shown.values()] == [builds, volumes, services]
        widths = [pane.outer_size.width for pane in shown.values() if pane.display]
        assert sum(widths) == (screen.size.width if widths else 0)  # one alone takes all the width
        assert screen.query_one("#under").outer_size.height == height

    offline(steps, data=Some(3))


def test_the_services_pane_shows_each_service_ready_its_use_and_the_apps_bound_to_it() -> None:
    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        screen = await open_tenant(pilot)
        assert screen.query_one("#services-pane").display
        [(key, cells)] = screen.query_one("#services", FittingTable).rows_shown
        assert key == "db"
        assert [str(cell) for cell in cells] == [
            "", "db", "postgres", "ready", "256 MiB", "41 MiB (16%)", "app-1, app-2", "db:5432"
        ]  # fmt: skip
        paas = dict(screen.query_one("#paas", FittingTable).rows_shown)
        assert (str(paas["app:app-1"][0]), str(paas["app:db"][0])) == ("app-1 → db", "db ⛃ postgres")
        saas = [key for key, _ in screen.query_one("#saas", FittingTable).rows_shown]
        assert "db" not in saas and len(saas) == 9  # the front door serves no service

        await pilot.press("down", "down")  # app-0's instance, then app-1, bound to db: db is marked
        await pilot.pause(0.2)
        assert str(screen.query_one("#services", FittingTable).rows_shown[0][1][0]) == "◆"

    offline(steps, size=(250, 40))


class Deploying(SyntheticData):
    """Deploys of templates answered as the API would: refused (as the plan refuses it) or done."""

    def __init__(self, tenants: int, refused: ApiError | None = None) -> None:
        super().__init__(tenants)
        self.refused = refused
        self.deployed: list[tuple[str, str, TemplateDeploy]] = []

    def deploy_template(self, tenant: str, template: str, body: TemplateDeploy) -> None:
        if self.refused is not None:
            raise self.refused
        self.deployed.append((tenant, template, body))


async def eventually(pilot: Pilot, probe: Callable[[], bool]) -> None:
    for _ in range(100):
        if probe():
            return
        await pilot.pause(0.05)
    raise AssertionError("it never happened")


async def guestbook_form(app: StrataConsole, pilot: Pilot) -> FormDialog:
    await pilot.press("colon", *"catalog", "enter")
    await painted(pilot, "#catalog")
    await pilot.press("down", "down", "enter", *"tenant-0000", "enter")
    for _ in range(100):
        if isinstance(app.screen, FormDialog) and app.screen.query("#env-TITLE"):
            return app.screen
        await pilot.pause(0.05)
    raise AssertionError("the guestbook's form never opened")


def test_the_guestbook_form_says_it_makes_and_binds_its_database_and_sends_one_deploy() -> None:
    data = Deploying(3)

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        form = await guestbook_form(app, pilot)
        labels = [str(label.render()) for label in form.query(".label")]
        assert labels[0].startswith("Also makes db (postgres, 256 MiB) unless the tenant has it")
        assert [label.split(" ")[0] for label in labels[1:]] == ["App", "Image", "Replicas", "TITLE"]
        form.query_one("#env-TITLE", Input).value = "Visitors"
        form.query_one("#app", Input).focus()
        await pilot.press("enter")
        await eventually(pilot, lambda: not isinstance(app.screen, FormDialog))
        assert "tenant-0000/guestbook deployed, bound to db" in [str(t.message) for t in app._notifications]  # noqa: SLF001

    offline(steps, data=data)
    [(tenant, template, body)] = data.deployed
    assert (tenant, template, body.app, body.replicas, body.env) == (
        "tenant-0000", "guestbook", "guestbook", 2, {"TITLE": "Visitors"}
    )  # fmt: skip


def test_a_refused_template_deploy_is_said_in_its_form_which_stays_open() -> None:
    quota = "instances quota exceeded: this change needs 7 in all, plan 'small' allows 6"
    data = Deploying(3, ApiError(403, "quota_exceeded", quota, "instances"))

    async def steps(app: StrataConsole, pilot: Pilot) -> None:
        form = await guestbook_form(app, pilot)
        await pilot.press("enter")
        await eventually(pilot, lambda: error_of(app) == quota)
        assert app.screen is form
        await pilot.pause(0.1)
        dialog, error = form.query_one("#dialog").region, form.query_one("#error").region
        assert dialog.y <= error.y < dialog.bottom  # scrolled into view at 80×24

    offline(steps, data=data, size=(80, 24))
