from pathlib import Path

import pytest

from tenants import catalog
from tenants.catalog import TemplateDeploy
from tenants.enums import AppKind
from tenants.errors import Invalid, NotFound


def test_the_shipped_catalog_loads_and_each_template_makes_a_valid_spec() -> None:
    templates = catalog.load()
    assert {"hello", "static-site", "guestbook"} <= {t.name for t in templates}
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


GUESTBOOK = """
[[template]]
name = "book"
description = "a book"
image = "example/book:1"
[[template.env]]
name = "TITLE"
default = "Book"
"""


def test_the_shipped_guestbook_makes_and_binds_a_postgresql_of_its_own() -> None:
    [guestbook] = [t for t in catalog.load() if t.name == "guestbook"]
    [db] = guestbook.services
    assert (db.name, db.kind, db.size_mib) == ("db", AppKind.POSTGRES, 256)
    assert (guestbook.image, guestbook.health_path) == ("strata/guestbook", "/healthz/")


def test_a_templates_services_are_read_as_services_create_takes_them(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(GUESTBOOK + '[[template.services]]\nname = "db"\n')
    [book] = catalog.load(path)
    assert [(s.name, s.kind, s.size_mib) for s in book.services] == [("db", AppKind.POSTGRES, 1024)]  # the defaults


@pytest.mark.parametrize(
    ("services", "why"),
    [
        ('name = "db"\nsize_mib = 8', "greater than or equal to 16"),
        ('name = "Bad_Name"', "not a DNS label"),
        ('name = "db"\nkind = "web"', "a service is of a service's kind"),
        ('name = "db"\nkind = "redis"', "kind"),
        ('name = "db"\nversion = "16"', "Extra inputs are not permitted"),
        ('name = "db"\n[[template.services]]\nname = "db"', "names a service twice"),
        ('name = "db"\n[[template.services]]\nname = "db2"', "two postgres services: both would be bound as"),
        ('name = "book"', "has a service of its own name"),
    ],
)
def test_a_catalog_with_a_bad_service_is_refused_saying_why(tmp_path: Path, services: str, why: str) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(f"{GUESTBOOK}[[template.services]]\n{services}\n")
    with pytest.raises(ValueError, match="is not valid") as refused:
        catalog.load(path)
    assert why in str(refused.value)


def test_a_template_may_not_ask_for_the_variable_its_binding_sets(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(GUESTBOOK + '[[template.env]]\nname = "DATABASE_URL"\n[[template.services]]\nname = "db"\n')
    with pytest.raises(ValueError, match="asks for env DATABASE_URL, which its service's binding sets"):
        catalog.load(path)


def test_a_catalog_naming_a_template_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(GUESTBOOK * 2)
    with pytest.raises(ValueError, match="names a template twice"):
        catalog.load(path)


def test_a_template_deploy_changes_only_what_its_form_may_and_takes_the_template_for_the_rest() -> None:
    [guestbook] = [t for t in catalog.load() if t.name == "guestbook"]
    spec = TemplateDeploy(app="visitors", replicas=1, env={"TITLE": "Visitors"}).spec(guestbook)
    assert (spec.image, spec.port, spec.health_path, spec.replicas, spec.env) == (
        "strata/guestbook", 8080, "/healthz/", 1, {"TITLE": "Visitors"}
    )  # fmt: skip
    assert TemplateDeploy(app="visitors").spec(guestbook).replicas == 2
    assert TemplateDeploy(app="visitors", image="strata/guestbook:2").spec(guestbook).image == "strata/guestbook:2"
    with pytest.raises(Invalid, match="has no env field DATABASE_URL"):
        TemplateDeploy(app="visitors", env={"DATABASE_URL": "postgresql://elsewhere"}).spec(guestbook)
    with pytest.raises(ValueError, match="not an image reference"):
        TemplateDeploy(app="visitors", image="Not An Image").spec(guestbook)
    with pytest.raises(ValueError, match="not a DNS label"):
        TemplateDeploy(app="Visitors")


def test_a_template_is_found_by_name_or_not_found_naming_those_there_are() -> None:
    assert catalog.get_template("guestbook").name == "guestbook"
    with pytest.raises(NotFound, match="no template named 'nosuch' \\(it has hello, static-site, guestbook\\)"):
        catalog.get_template("nosuch")
