"""`.dockerignore` as Docker reads it (moby's dockerignore + patternmatcher), and the context tar made with it."""

import io
import tarfile
from pathlib import Path

import pytest

from tenants.build_context import BadPattern, DockerIgnore, write_context


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["*.log"], "a.log", True),
        (["*.log"], "sub/a.log", False),  # anchored at the top, unlike gitignore
        (["**/*.log"], "sub/deep/a.log", True),
        (["**/*.log"], "a.log", True),  # `**` is zero directories too
        (["a/**/b"], "a/b", True),
        (["a/**/b"], "a/x/y/b", True),
        (["docs/**"], "docs/a/b", True),
        (["docs/**"], "docs", False),
        (["build"], "build/out/x.o", True),  # a parent directory matched excludes what is below
        (["/build/"], "build/x", True),  # leading and trailing `/` cleaned
        (["./build//x/../y"], "build/y", True),
        (["x?y"], "xzy", True),
        (["x?y"], "x/y", False),  # `?` is never a `/`
        (["f[0-9]"], "f7", True),
        (["f[0-9]"], "fa", False),
        (["f[^0-9]"], "fa", True),
        (["a\\*b"], "a*b", True),
        (["a\\*b"], "axb", False),
        (["a.b"], "axb", False),  # `.` is literal
        (["*.log", "!keep.log"], "keep.log", False),
        (["*.log", "!keep.log", "keep*"], "keep.log", True),  # the last match wins
        (["node_modules", "!node_modules/kept"], "node_modules/kept/x.js", False),
        (["# a comment", "", "  tmp  "], "tmp", True),
        (["#tmp"], "#tmp", False),
        (["\\#tmp"], "#tmp", True),
    ],
)
def test_patterns_match_as_docker_matches_them(patterns: list[str], path: str, excluded: bool) -> None:
    assert DockerIgnore(patterns).excludes(path) is excluded


def test_a_bare_exclamation_mark_and_an_unclosed_class_are_refused() -> None:
    with pytest.raises(BadPattern):
        DockerIgnore(["!"])
    with pytest.raises(BadPattern):
        DockerIgnore(["a[b"])


def test_the_context_leaves_out_what_is_ignored_but_always_sends_the_build_files(tmp_path: Path) -> None:
    for name in ("Dockerfile", "index.html", "a.log", "sub/b.log", "sub/keep.log", "node_modules/x/y.js"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / ".dockerignore").write_text("**/*.log\n!sub/keep.log\nnode_modules\nDockerfile\n.dockerignore\n")
    (tmp_path / "link").symlink_to("/etc/passwd")
    out = io.BytesIO()
    write_context(tmp_path, out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        members = {member.name: member for member in tar}
    assert sorted(members) == [".dockerignore", "Dockerfile", "index.html", "link", "sub", "sub/keep.log"]
    assert members["link"].issym() and members["link"].linkname == "/etc/passwd"  # never followed
    assert {(m.uid, m.gid) for m in members.values()} == {(0, 0)}
