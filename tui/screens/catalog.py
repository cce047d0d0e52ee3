"""The catalog (`:catalog`): ready apps to deploy through a form, for tenants who write no code."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable

from tenants.catalog import Template
from tui.dao import ConsoleData
from tui.screens.base import DataScreen
from tui.screens.dialogs import DeployDialog, PromptDialog


class CatalogScreen(DataScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("enter", "deploy", "Deploy")]

    def __init__(self, tenant: str | None = None) -> None:
        super().__init__()
        self.tenant = tenant
        self.templates: list[Template] = []

    def body(self) -> ComposeResult:
        table: DataTable[object] = DataTable(id="catalog", cursor_type="row")
        table.add_columns("APP", "IMAGE", "DESCRIPTION")
        yield table

    def on_mount(self) -> None:
        self.app.sub_title = "catalog" + (f" — deploying to {self.tenant}" if self.tenant else "")
        self.query_one("#catalog", DataTable).focus()

    def load(self, data: ConsoleData) -> list[Template]:
        return data.catalog()

    def show(self, payload: list[Template]) -> None:
        if payload == self.templates:
            return
        self.templates = payload
        table = self.query_one("#catalog", DataTable)
        table.clear()
        for template in payload:
            table.add_row(template.name, template.image, template.description, key=template.name)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_deploy()

    def action_deploy(self) -> None:
        table = self.query_one("#catalog", DataTable)
        if not table.row_count:
            return
        template = self.templates[table.cursor_row]
        if self.tenant:
            self._form(self.tenant, template)
            return
        own = self.app.data.own_tenant  # type: ignore[attr-defined]
        if own:
            self._form(own, template)
            return

        def chosen(tenant: str | None) -> None:
            if tenant:
                self._form(tenant, template)

        self.app.push_screen(PromptDialog("Deploy to which tenant?", "acme"), chosen)

    def _form(self, tenant: str, template: Template) -> None:
        def submitted(result: tuple[str, object] | None) -> None:
            if result:
                app, spec = result
                self.app.act(lambda data: data.deploy(tenant, app, spec), f"{tenant}/{app} deployed")  # type: ignore[attr-defined]

        self.app.push_screen(DeployDialog(tenant, template), submitted)
