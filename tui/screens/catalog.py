"""The catalog (`:catalog`): ready apps to deploy through a form, for tenants who write no code."""

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable

from tenants.catalog import Template
from tenants.names import check_name
from tenants.schemas import AppSpec
from tui.dao import ConsoleData
from tui.screens.base import DataScreen
from tui.screens.dialogs import deploy_form, prompt


class CatalogScreen(DataScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("enter", "deploy", "Deploy")]

    def __init__(self, tenant: str | None = None) -> None:
        super().__init__()
        self.tenant = tenant
        self.templates: list[Template] = []
        self.sub_title = "catalog" + (f" — deploying to {tenant}" if tenant else "")

    def body(self) -> ComposeResult:
        table: DataTable[object] = DataTable(id="catalog", cursor_type="row")
        table.add_columns("APP", "IMAGE", "DESCRIPTION")
        yield table

    def on_mount(self) -> None:
        self.query_one("#catalog", DataTable).focus()

    def load(self, data: ConsoleData) -> tuple[list[Template], str | None]:
        """The templates, and the tenant to deploy to when it goes without asking (a tenant token's own)."""
        return data.catalog(), self.tenant or data.own_tenant

    def show(self, payload: tuple[list[Template], str | None]) -> None:
        templates, self.tenant = payload
        if templates == self.templates:
            return
        self.templates = templates
        table = self.query_one("#catalog", DataTable)
        table.clear()
        for template in templates:
            table.add_row(Text(template.name), Text(template.image), Text(template.description), key=template.name)

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

        def chosen(tenant: str | None) -> None:
            if tenant:
                self._form(tenant, template)

        self.app.push_screen(
            prompt("Deploy to which tenant?", "acme", lambda name: check_name(name, field="tenant")), chosen
        )

    def _form(self, tenant: str, template: Template) -> None:
        def deployed(result: tuple[str, AppSpec] | None) -> None:
            if result:
                self.app.acted(f"{tenant}/{result[0]} deployed")

        self.app.push_screen(deploy_form(tenant, template), deployed)
