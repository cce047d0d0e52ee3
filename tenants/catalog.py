"""The app catalog shipped with the platform (`catalog.toml` beside this file), checked when loaded."""

import tomllib
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from tenants.errors import Invalid
from tenants.schemas import AppSpec

CATALOG = Path(__file__).with_name("catalog.toml")


class EnvField(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    default: str = ""
    required: bool = False
    description: str = ""


class Template(BaseModel):
    """A ready app: what to run, and which environment the deploy form asks for."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str
    image: str
    port: int = 8080
    health_path: str | None = None
    replicas: int = 1
    env: list[EnvField] = []

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


def load(path: Path = CATALOG) -> list[Template]:
    try:
        return [Template.model_validate(entry) for entry in tomllib.loads(path.read_text())["template"]]
    except (KeyError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ValueError(f"the catalog {path} is not valid: {exc}") from None


@cache
def templates() -> list[Template]:
    return load()
