from pathlib import Path

import pytest

from tenants import catalog
from tenants.errors import Invalid


def test_the_shipped_catalog_loads_and_each_template_makes_a_valid_spec() -> None:
    templates = catalog.load()
    assert {"hello", "static-site"} <= {t.name for t in templates}
    for template in templates:
        assert template.spec({}).image == template.image


def test_defaults_fill_what_the_form_leaves_empty_and_required_fields_must_be_given(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text("""
[[template]]
name = "blog"
description = "a blog"
image = "example/blog:1"
[[template.env]]
name = "TITLE"
required = true
[[template.env]]
name = "THEME"
default = "light"
""")
    [blog] = catalog.load(path)
    with pytest.raises(Invalid, match="fill in TITLE"):
        blog.spec({"THEME": "dark"})
    assert blog.spec({"TITLE": "Notes"}).env == {"TITLE": "Notes", "THEME": "light"}


def test_a_broken_catalog_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text('[[template]]\nname = "x"\n')
    with pytest.raises(ValueError, match="is not valid"):
        catalog.load(path)
