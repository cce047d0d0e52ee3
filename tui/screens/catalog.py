"""The catalog (`:catalog`): ready apps to deploy through a form, for tenants who write no code; a template's
services (a database) are made and bound by the same deploy."""

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable

from tenants import roles
from tenants.catalog import Template, TemplateDeploy
from tenants.names import check_name
from tui import render
from tui.dao import ConsoleData
from tui.screens.base import DataScreen
from tui.screens.dialogs import prompt, template_form


class CatalogScreen(DataScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("enter", "deploy", "Deploy")]

    def __init__(self, tenant: str | None = None) -> None:
        super().__init__()
        self.tenant = tenant
        self.templates: list[Template] = []
        self.sub_title = "catalog" + (f" — deploying to {tenant}" if tenant else "")

    def body(self) -> ComposeResult:
        table: DataTable[object] = DataTable(id="catalog", cursor_type="row")
        table.add_columns("APP", "IMAGE", "SERVICES", "DESCRIPTION")
        yield table

    def on_mount(self) -> None:
        self.query_one("#catalog", DataTable).focus()

    def load(self, data: ConsoleData) -> tuple[list[Template], str | None]:
        """The templates, and the tenant to deploy to when it goes without asking (a tenant token's own)."""
        data.whoami()  # its role: a viewer is told it may not deploy before it fills a form in
        return data.catalog(), self.tenant or data.own_tenant

    def show(self, payload: tuple[list[Template], str | None]) -> None:
        templates, self.tenant = payload
        if templates == self.templates:
            return
        self.templates = templates
        table = self.query_one("#catalog", DataTable)
        table.clear()
        for template in templates:
            table.add_row(
                Text(template.name),
                Text(template.image),
                services(template),
                Text(template.description),
                key=template.name,
            )

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
        if why := self.app.data.refusal(tenant, roles.DEPLOY_TEMPLATE, "deploying from the catalog"):
            self.notify(why, title="not allowed", severity="warning", markup=False)
            return

        def deployed(result: TemplateDeploy | None) -> None:
            if result:
                bound = f", bound to {', '.join(s.name for s in template.services)}" if template.services else ""
                self.app.acted(f"{tenant}/{result.app} deployed{bound}")

        self.app.push_screen(template_form(tenant, template), deployed)


def services(template: Template) -> Text:
    """The services a template makes and binds: `db postgres 256 MiB`; `-` for none."""
    if not template.services:
        return Text("-", style="dim")
    return Text(", ".join(f"{s.name} {s.kind} {render.size(s.size_mib)}" for s in template.services), style="cyan")
