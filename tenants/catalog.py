"""The app catalog shipped with the platform (`catalog.toml` beside this file), checked when loaded, and the bodies
of a template's deploy (`POST /tenants/T/catalog/TEMPLATE/deploy`)."""

import tomllib
from functools import cache
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tenants.enums import AppKind
from tenants.errors import Invalid, NotFound
from tenants.schemas import MAX_REPLICAS, AppRead, AppSpec, Name, ServiceCreate, ServiceRead

CATALOG = Path(__file__).with_name("catalog.toml")
BOUND_AS = {AppKind.POSTGRES: "DATABASE_URL"}  # the variable a bound service of each kind gives the app


class EnvField(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    default: str = ""
    required: bool = False
    description: str = ""


class Template(BaseModel):
    """A ready app: what to run, which environment the deploy form asks for, and the services it needs: each made
    for the tenant when it has none of that name (`[[template.services]]`, as `strata services create` takes
    them) and bound to the app."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str
    image: str
    port: int = 8080
    health_path: str | None = None
    replicas: int = 1
    env: list[EnvField] = []
    services: list[ServiceCreate] = []

    @model_validator(mode="after")
    def _services(self) -> Self:
        """A service per name and per kind (each kind is bound as one variable: two would both want it), none
        named as the app it is for (a service is an app of its own), and no env field the binding sets."""
        names = [service.name for service in self.services]
        kinds = [service.kind for service in self.services]
        if len(set(names)) != len(names):
            raise ValueError(f"template {self.name!r} names a service twice")
        if len(set(kinds)) != len(kinds):
            raise ValueError(
                f"template {self.name!r} has two {kinds[0]} services: both would be bound as {BOUND_AS.get(kinds[0])}"
            )
        if self.name in names:
            raise ValueError(f"template {self.name!r} has a service of its own name: the app is named so")
        bound = sorted({field.name for field in self.env} & {BOUND_AS.get(kind) for kind in kinds})
        if bound:
            raise ValueError(f"template {self.name!r} asks for env {bound[0]}, which its service's binding sets")
        return self

    def spec(self, values: dict[str, str]) -> AppSpec:
        """The app spec for this template with the form's `values`; a required one left empty is refused."""
        missing = [field.name for field in self.env if field.required and not values.get(field.name, "").strip()]
        if missing:
            raise Invalid(f"fill in {', '.join(missing)} (required by {self.name})", field="env")
        env = {field.name: values.get(field.name) or field.default for field in self.env}
        return AppSpec(
            image=self.image,
            port=self.port,
            health_path=self.health_path,
            replicas=self.replicas,
            env={key: value for key, value in env.items() if value},
        )


class TemplateDeploy(BaseModel):
    """A template deployed as app `app`, with what its form may change: the image (another build of it, say), the
    replicas and the env fields; all else is the template's."""

    model_config = ConfigDict(extra="forbid")
    app: Name
    image: str | None = None  # the template's when None
    replicas: int | None = Field(default=None, ge=0, le=MAX_REPLICAS)  # the template's when None
    env: dict[str, str] = {}  # the template's env fields only; one left out (or empty) takes its default

    def spec(self, template: Template) -> AppSpec:
        """The app's spec: the template's with this deploy's changes, checked as any deploy's (`Invalid`)."""
        unknown = sorted(set(self.env) - {field.name for field in template.env})
        if unknown:
            raise Invalid(f"template {template.name!r} has no env field {unknown[0]}", field="env")
        replicas = template.replicas if self.replicas is None else self.replicas
        changed = template.model_copy(update={"image": self.image or template.image, "replicas": replicas})
        try:
            return changed.spec(self.env)
        except ValidationError as exc:  # a value the spec refuses (an image, an env value): the input's fault
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or None
            cause = first.get("ctx", {}).get("error")
            if isinstance(cause, ValueError):
                raise Invalid(str(cause), field=where) from None
            raise Invalid(f"{where}: {first['msg']}" if where else first["msg"], field=where) from None


class TemplateDeployed(BaseModel):
    """What a template's deploy made: the app, and its services (`created`: those it made; the others the tenant
    had), each bound to it."""

    app: AppRead
    services: list[ServiceRead]
    created: list[str]


def load(path: Path = CATALOG) -> list[Template]:
    try:
        found = [Template.model_validate(entry) for entry in tomllib.loads(path.read_text())["template"]]
    except (KeyError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ValueError(f"the catalog {path} is not valid: {exc}") from None
    names = [template.name for template in found]
    if len(set(names)) != len(names):
        raise ValueError(f"the catalog {path} is not valid: it names a template twice")
    return found


@cache
def templates() -> list[Template]:
    return load()


def get_template(name: str) -> Template:
    """The shipped template `name`; `NotFound` naming those there are."""
    found = next((template for template in templates() if template.name == name), None)
    if found is None:
        names = ", ".join(template.name for template in templates())
        raise NotFound(f"the catalog has no template named {name!r} (it has {names})", field="template")
    return found
