"""The images a Dockerfile names, read as the engine's legacy builder reads it."""

import pytest

from hosting.paas.dockerfile import named_images, trigger_images
from tenants.errors import Invalid


def names(text: str) -> list[tuple[str, str, int]]:
    return [(image.instruction, image.name, image.line) for image in named_images(text)]


def test_from_and_copy_from_name_images_but_stages_and_scratch_do_not() -> None:
    text = (
        "from --platform=linux/amd64 golang:1.22 AS Build\n"
        "FROM scratch\n"
        "COPY --from=build /out /app\n"
        "COPY --from=0 /out /app0\n"
        "COPY --from=strata/static /www /www\n"
        "FROM build\n"
        "copy --FROM=other:1 / /\n"
    )
    assert names(text) == [
        ("FROM", "golang:1.22", 1),
        ("COPY --from", "strata/static", 5),
        ("COPY --from", "other:1", 7),
    ]


def test_a_stage_is_only_one_defined_earlier_and_an_index_only_one_that_exists() -> None:
    assert names("FROM later\nFROM strata/static AS later\nCOPY --from=2 / /\n") == [
        ("FROM", "later", 1),
        ("FROM", "strata/static", 2),
        ("COPY --from", "2", 3),
    ]


def test_continuations_comments_and_empty_continuation_lines_are_joined_as_the_engine_does() -> None:
    text = (
        "# a comment\n\n  FROM \\\n# inside\n\n   strata-build/a/web:1 \\  \n  AS x\nRUN echo \\\nFROM not/an-image\n"
    )
    assert names(text) == [("FROM", "strata-build/a/web:1", 3)]


def test_the_escape_directive_changes_the_continuation_character() -> None:
    text = "# escape=`\nFROM strata/static\nRUN echo \\\nFROM strata-build/a/web:1\nRUN echo `\nFROM hidden/one\n"
    assert names(text) == [("FROM", "strata/static", 2), ("FROM", "strata-build/a/web:1", 4)]
    late = "FROM strata/static\n# escape=`\nRUN echo `\nFROM strata-build/a/web:1\n"
    assert names(late) == [("FROM", "strata/static", 1), ("FROM", "strata-build/a/web:1", 4)]  # not a directive


def test_onbuild_copy_from_is_an_image_always_and_so_are_triggers() -> None:
    assert names("FROM strata/static AS base\nONBUILD COPY --from=base / /\n") == [
        ("FROM", "strata/static", 1),
        ("COPY --from", "base", 2),
    ]
    assert [i.name for i in trigger_images(["COPY --from=strata-build/a/web:1 / /x", "RUN true"])] == [
        "strata-build/a/web:1"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ARG BASE=strata/static\nFROM $BASE\n", "FROM with build arguments is not supported"),
        ("FROM ${BASE:-strata/static}\n", "FROM with build arguments is not supported"),
        ("FROM strata/static\nCOPY --from=$X / /\n", "COPY --from with build arguments"),
        ('FROM "strata-build/a/web:1"\n', "not an image reference"),
        ("FROM strata-build/a/w\\eb:1\n", "not an image reference"),
    ],
)
def test_names_not_written_out_are_refused(text: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        named_images(text)
