"""Portability CSV: every number form becomes E.164 digits, bad rows are problems with their line numbers
(never guessed at), chunks come as the lines are read, and a file of any size is streamed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.routing import portability
from gateway.routing.portability import MAX_PROBLEMS, PortedChunk, e164_digits, read_ported

NETWORKS = {"cmcc", "unicom", "telecom"}


def read_all(text: str, **kwargs: object) -> list[PortedChunk]:
    return list(read_ported(text.splitlines(keepends=True), **kwargs))  # type: ignore[arg-type]


def rows_of(chunks: list[PortedChunk]) -> list[tuple[str, str]]:
    return [row for c in chunks for row in c.rows]


def problems_of(chunks: list[PortedChunk]) -> list[tuple[int, str]]:
    return [p for c in chunks for p in c.problems]


@pytest.mark.parametrize(
    ("written", "digits"),
    [
        ("+8613800138000", "8613800138000"),
        ("008613800138000", "8613800138000"),
        ("8613800138000", "8613800138000"),
        ("+1", "1"),
        ("123456789012345", "123456789012345"),
    ],
)
def test_every_number_form_becomes_e164_digits(written: str, digits: str) -> None:
    assert e164_digits(written) == digits
    assert rows_of(read_all(f"{written},cmcc\n")) == [(digits, "cmcc")]


@pytest.mark.parametrize(
    "written",
    [
        "",
        "+",
        "00",
        "0861380013800",  # a national trunk prefix, not an international one
        "+0086138",  # "+" and "00" together
        "1234567890123456",  # 16 digits
        "+86 138 0013 8000",
        "86-138-0013-8000",
        "8613800138\u0660\u0661",  # Arabic-Indic digits are digits, not ASCII ones
        "\uff18\uff16138",  # full-width digits
        "861380013800x",
    ],
)
def test_a_number_that_is_not_e164_is_a_problem_with_its_line(written: str) -> None:
    assert e164_digits(written) is None
    chunks = read_all(f"8613800138000,cmcc\n{written},cmcc\n8613900139000,unicom\n")
    assert rows_of(chunks) == [("8613800138000", "cmcc"), ("8613900139000", "unicom")]
    ((line, reason),) = problems_of(chunks)
    assert line == 2
    assert "is not E.164" in reason
    assert sum(c.skipped for c in chunks) == 1


def test_header_comments_blank_lines_and_spaces_are_skipped() -> None:
    text = (
        "\ufeffNumber , Network\r\n"
        "# exported 2026-12-01 by the national portability database\r\n"
        "\r\n"
        "   +8613800138000 ,  cmcc  \r\n"
        "  # an indented comment\n"
        '"008613900139000","unicom"\n'
        "\t\n"
        "8613700137000,telecom"  # no newline at the end
    )
    chunks = read_all(text, known_networks=NETWORKS)
    assert rows_of(chunks) == [("8613800138000", "cmcc"), ("8613900139000", "unicom"), ("8613700137000", "telecom")]
    assert problems_of(chunks) == []
    assert chunks[-1].line == 8


def test_a_header_later_in_the_file_is_a_problem_not_a_header() -> None:
    chunks = read_all("8613800138000,cmcc\nnumber,network\n")
    assert rows_of(chunks) == [("8613800138000", "cmcc")]
    assert [line for line, _ in problems_of(chunks)] == [2]


def test_an_empty_network_unports_the_number() -> None:
    chunks = read_all("+8613800138000,\n8613900139000 , \n", known_networks=NETWORKS)
    assert rows_of(chunks) == [("8613800138000", ""), ("8613900139000", "")]
    assert problems_of(chunks) == []


def test_field_count_unknown_and_long_networks_are_problems_with_line_numbers() -> None:
    text = "\n".join(
        [
            "number,network",
            "8613800138000,cmcc",  # 2
            "8613800138001",  # 3: no network column
            "8613800138002,cmcc,extra",  # 4
            "8613800138003,vodafone",  # 5: not a known network
            "8613800138004,unicom",  # 6
            "8613800138005," + "n" * 65,  # 7
        ]
    )
    chunks = read_all(text, known_networks=NETWORKS | {"n" * 65})
    assert rows_of(chunks) == [("8613800138000", "cmcc"), ("8613800138004", "unicom")]
    problems = problems_of(chunks)
    assert [line for line, _ in problems] == [3, 4, 5, 7]
    assert "1 field," in problems[0][1]
    assert "3 fields" in problems[1][1]
    assert "unknown network 'vodafone'" in problems[2][1]
    assert "over 64 bytes" in problems[3][1]


def test_any_network_goes_when_none_are_known() -> None:
    assert rows_of(read_all("8613800138000,vodafone\n")) == [("8613800138000", "vodafone")]


def test_a_network_of_64_utf8_bytes_is_kept() -> None:
    name = "\u00e9" * 32  # 64 bytes in UTF-8
    assert rows_of(read_all(f"8613800138000,{name}\n")) == [("8613800138000", name)]
    assert problems_of(read_all(f"8613800138000,{name}x\n"))[0][0] == 1


def test_chunks_hold_at_most_chunk_rows_and_end_at_their_last_line() -> None:
    text = "number,network\n" + "".join(f"86138{i:08d},cmcc\n" for i in range(25))
    chunks = read_all(text, chunk=10)
    assert [len(c.rows) for c in chunks] == [10, 10, 5]
    assert [c.line for c in chunks] == [11, 21, 26]
    assert rows_of(chunks) == [(f"86138{i:08d}", "cmcc") for i in range(25)]


def test_bad_rows_count_towards_a_chunk_so_a_file_of_them_still_reports() -> None:
    text = "".join(f"bad{i},cmcc\n" for i in range(25))
    chunks = read_all(text, chunk=10)
    assert [(len(c.rows), c.skipped, c.line) for c in chunks] == [(0, 10, 10), (0, 10, 20), (0, 5, 25)]


def test_problems_kept_per_chunk_are_bounded_but_all_are_counted() -> None:
    text = "".join(f"bad{i},cmcc\n" for i in range(1000)) + "8613800138000,cmcc\n"
    (chunk,) = read_all(text, chunk=5000)
    assert chunk.skipped == 1000
    assert len(chunk.problems) == MAX_PROBLEMS
    assert [line for line, _ in chunk.problems] == list(range(1, MAX_PROBLEMS + 1))
    assert chunk.rows == (("8613800138000", "cmcc"),)


def test_an_empty_file_or_one_of_comments_yields_nothing() -> None:
    assert read_all("") == []
    assert read_all("number,network\n# nothing yet\n\n") == []


def test_a_chunk_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="chunk"):
        next(read_ported([], chunk=0))


def test_a_million_lines_are_streamed_chunk_by_chunk() -> None:
    total = 1_000_000
    read = 0

    def lines() -> Iterator[str]:
        nonlocal read
        yield "number,network\n"
        for i in range(total):
            read += 1
            yield f"+86139{i:08d},unicom\n"

    chunks = read_ported(lines(), known_networks=NETWORKS, chunk=50_000)
    first = next(chunks)
    # The first chunk came after its own lines: the rest of the file is not read yet.
    assert len(first.rows) == 50_000
    assert read == 50_000
    assert first.line == 50_001
    assert first.rows[0] == ("8613900000000", "unicom")
    count, last = len(first.rows), first
    for c in chunks:
        assert read == c.line - 1  # each chunk was handed over before the next line was read
        count += len(c.rows)
        last = c
    assert count == total
    assert last.line == total + 1
    assert last.rows[-1] == (f"86139{total - 1:08d}", "unicom")


def plain(lines: list[str], known: frozenset[str] | None) -> tuple[list[tuple[str, str]], list[tuple[int, str]]]:
    """What read_ported decides, line by line the long way (portability._row for every line)."""
    rows: list[tuple[str, str]] = []
    problems: list[tuple[int, str]] = []
    first = True
    for n, text in enumerate(lines, 1):
        line = text.strip()
        if n == 1:
            line = line.removeprefix("\ufeff").strip()
        if not line or line[0] == "#":
            continue
        row = portability._row(line, known)
        if first:
            first = False
            if isinstance(row, str) and portability._is_header(line):
                continue
        if isinstance(row, str):
            problems.append((n, row))
        else:
            rows.append(row)
    return rows, problems


FIELD = st.text(alphabet="0123456789+ \t\"#,a\u00e9\u0660\ufeff", max_size=18)
NETWORK = st.sampled_from(["", "cmcc", " unicom ", '"cmcc"', "vodafone", "x" * 16, "x" * 17, "\u00e9" * 17, "n" * 65])
LINE = st.one_of(
    st.builds(lambda a, b: f"{a},{b}\n", FIELD, NETWORK),
    st.builds(lambda a, b: f"{a},{b}", st.sampled_from(["+8613800138000", "008613800138000", "08613800"]), NETWORK),
    st.sampled_from(["number,network\n", "\ufeffnumber,network\n", "# c,1\n", "\n", "861,a,b\n", "861\n"]),
    FIELD,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(LINE, max_size=12), st.sampled_from([None, frozenset({"cmcc", "unicom", "x" * 17, "n" * 65})]))
def test_the_quick_path_decides_every_line_as_the_long_way_does(lines: list[str], known: frozenset[str] | None) -> None:
    chunks = list(read_ported(lines, known_networks=known, chunk=3))
    assert (rows_of(chunks), problems_of(chunks)) == plain(lines, known)
