"""The control API's routes reach the running platform through the typed dependencies of `strata/api/deps.py`,
the one module that touches `app.state` (issue 14): a route cannot reach past what those dependencies give."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
THE_ONE_READER = ROOT / "strata" / "api" / "deps.py"


def touches_state(path: Path) -> list[int]:
    """Lines of `<anything>.app.state` or `app.state` in the module."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr == "state"
        and (
            (isinstance(node.value, ast.Name) and node.value.id == "app")
            or (isinstance(node.value, ast.Attribute) and node.value.attr == "app")
        )
    ]


def test_only_the_dependencies_module_touches_app_state() -> None:
    offences = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / "strata").rglob("*.py"))
        if path != THE_ONE_READER and (lines := touches_state(path))
    }
    assert offences == {}
    assert touches_state(THE_ONE_READER)  # the check finds what it looks for
