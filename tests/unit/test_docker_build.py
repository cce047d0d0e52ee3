"""The Engine API build's parts that need no engine: its query, and how its stream becomes lines."""

import json

from hosting.paas.docker_build import _Lines, build_params


def stream(*pieces: str) -> bytes:
    return b"".join(json.dumps({"stream": piece}).encode() for piece in pieces)


def lines_of(lines: _Lines, *chunks: bytes) -> list[str]:
    return [line for chunk in chunks for message in lines.feed(chunk) for line in lines.text(message)]


def test_a_character_split_across_chunks_is_decoded_whole() -> None:
    data = json.dumps({"stream": "héllo ✓\n"}, ensure_ascii=False).encode()
    cut = data.index("✓".encode()) + 1  # inside the three bytes of the check mark
    assert lines_of(_Lines(), data[:cut], data[cut:]) == ["héllo ✓"]


def test_a_long_line_comes_in_pieces_and_a_line_without_end_is_never_held_whole() -> None:
    lines = _Lines(max_line=10)
    assert lines_of(lines, stream("a" * 25 + "\n")) == ["a" * 10, "a" * 10, "a" * 5]
    got = lines_of(lines, *(stream("y" * 4) for _ in range(10)))  # 40 characters, no newline yet
    assert got == ["y" * 10] * 3 and len(lines._partial) <= 10
    assert lines.flush() == ["y" * 10]


def test_the_steps_run_on_the_network_given() -> None:
    assert build_params("t", None, None, [], "strata-p1-acme")["networkmode"] == "strata-p1-acme"
    assert "networkmode" not in build_params("t", None, None, [])
