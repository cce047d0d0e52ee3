"""Snapshots of the main screens (SVG under __snapshots__), on the fixed data of `SyntheticData`, so no
figure in them is volatile. `pytest --snapshot-update` rewrites them after an intended change of the UI."""

from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from tui.app import StrataConsole
from tui.screens.dialogs import FormDialog
from tui.synthetic import SyntheticData

SIZE = (120, 32)


def console() -> StrataConsole:
    return StrataConsole(SyntheticData(tenants=12), refresh_seconds=3600)  # type: ignore[arg-type]


async def painted(pilot: Pilot, table: str = "#tenants") -> None:
    while not pilot.app.screen.query(table) or not pilot.app.screen.query_one(table, DataTable).row_count:
        await pilot.pause(0.05)
    await pilot.pause(0.2)


def test_overview(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(console(), terminal_size=SIZE, run_before=painted)


def test_tenant_screen_with_its_three_layers(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def open_tenant(pilot: Pilot) -> None:
        await painted(pilot)
        await pilot.press("down", "enter")
        await painted(pilot, "#paas")

    assert snap_compare(console(), terminal_size=SIZE, run_before=open_tenant)


def test_tenant_screen_side_by_side_at_160_columns_names_what_it_hides(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """Each pane shows its most important columns, and names under it those that did not fit."""

    async def open_tenant(pilot: Pilot) -> None:
        await painted(pilot)
        await pilot.press("enter")
        await painted(pilot, "#paas")

    assert snap_compare(console(), terminal_size=(160, 40), run_before=open_tenant)


def test_tenant_screen_in_80_by_24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def open_tenant(pilot: Pilot) -> None:
        await painted(pilot)
        await pilot.press("enter")
        await painted(pilot, "#paas")

    assert snap_compare(console(), terminal_size=(80, 24), run_before=open_tenant)


def test_help(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def help_(pilot: Pilot) -> None:
        await painted(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(console(), terminal_size=SIZE, run_before=help_)


def test_nodes_with_a_vm_node(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def nodes(pilot: Pilot) -> None:
        await painted(pilot)
        await pilot.press("colon", *"nodes", "enter")
        await painted(pilot, "#nodes")

    assert snap_compare(console(), terminal_size=SIZE, run_before=nodes)


def test_usage_per_tenant_and_app_against_the_plan(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def usage(pilot: Pilot) -> None:
        await painted(pilot)
        await pilot.press("colon", *"usage", "enter")
        await painted(pilot, "#usage")

    assert snap_compare(console(), terminal_size=SIZE, run_before=usage)


def test_catalog_with_what_each_template_makes(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def catalog(pilot: Pilot) -> None:
        await painted(pilot)
        await pilot.press("colon", *"catalog", "enter")
        await painted(pilot, "#catalog")

    assert snap_compare(console(), terminal_size=SIZE, run_before=catalog)


def test_the_guestbook_form_says_it_makes_and_binds_a_database(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def form(pilot: Pilot) -> None:
        await painted(pilot)
        await pilot.press("colon", *"catalog", "enter")
        await painted(pilot, "#catalog")
        await pilot.press("down", "down", "enter", *"tenant-0000", "enter")
        while not isinstance(pilot.app.screen, FormDialog) or not pilot.app.screen.query("#env-TITLE"):
            await pilot.pause(0.05)
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False  # the cursor hidden, not caught mid-blink
        await pilot.pause(0.3)

    assert snap_compare(console(), terminal_size=SIZE, run_before=form)
