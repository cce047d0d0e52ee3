"""The dependency rules of ARCHITECTURE.md, checked on the imports the code really makes."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("strata", "tenants", "hosting", "gateway", "tui")

# package (or sub-package) -> top-level packages and libraries it must never import
FORBIDDEN = {
    "tenants": {"strata", "hosting", "gateway", "tui", "aiodocker", "textual", "asyncssh", "fastapi"},
    "hosting": {"strata", "gateway", "tui", "textual"},
    "hosting/iaas": {"hosting.paas", "aiodocker"},
    "gateway": {"strata", "hosting", "tui", "textual", "aiodocker", "httpx", "aiohttp", "sqlmodel", "fastapi"},
    "tui": {"strata", "hosting", "gateway", "aiodocker", "sqlmodel", "sqlalchemy"},
}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_what_its_layer_may_not(package: str) -> None:
    offences = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / package).rglob("*.py")
        for name in imports_of(path)
        if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN[package])
    ]
    assert offences == []


# libraries the gateway's processes must never load, not even through a module of `tenants` they import
GATEWAY_NEVER_LOADS = ("sqlmodel", "fastapi")


def test_the_gateway_loads_no_database_or_api_library() -> None:
    """The hot path may stand on `tenants` (a value such as `RouteSpec`), never on its database or the API."""
    probe = (
        "import pkgutil, importlib, sys, gateway\n"
        "for module in pkgutil.walk_packages(gateway.__path__, 'gateway.'): importlib.import_module(module.name)\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert [name for name in GATEWAY_NEVER_LOADS if name in loaded] == []


def test_the_layout_has_every_package() -> None:
    assert all((ROOT / package / "__init__.py").exists() for package in PACKAGES)
