"""Number portability lists [pure]: an operator's CSV of ported numbers, read as a stream of chunks.

A ported number moved to another operator (network) but kept its number, so its number block names the
wrong network; the portability table (number -> network) overrides the block (router.py). Operators load
it from a CSV with millions of rows, one row a line, UTF-8:

    number,network                      a header, skipped (first row only)
    # a comment                         skipped, as are blank lines
    +8613800138000,cmcc                 ported to cmcc
    008613900139000, unicom             the number as +CC..., 00CC... or CC...; spaces around fields trimmed
    8613700137000,                      an empty network: not ported any more (an update un-ports it)

The number becomes its E.164 digits (ITU-T E.164 6.1: at most 15 digits, the country code first, so no
leading 0 once the "+" or the "00" international prefix is taken off). A field may be quoted ("cmcc").
A row that cannot be used is a problem (line number, reason) and is skipped, never guessed at: a number
that is not 1-15 ASCII digits or starts with 0, a network not in `known_networks` (when given) or over
64 UTF-8 bytes (the store refuses such a row, and would refuse its whole chunk with it), a line with one
field or more than two.

`read_ported` streams: it holds one chunk of rows at a time, whatever the file's size, so the caller can
write each chunk (store.ops.PortedRows) before the next line is read.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

# ITU-T E.164 6.1: a number is at most 15 digits. The store keys rows by these digits (store/keys.py).
MAX_DIGITS = 15
# Network names are configuration names; the store refuses longer ones (store.MAX_NETWORK_BYTES).
MAX_NETWORK_BYTES = 64
# Problems kept per chunk, with their line numbers; every one is counted in `skipped`.
MAX_PROBLEMS = 100
# How much of a bad field a problem quotes.
_QUOTE = 40
_HEADER = ["number", "network"]
# A network name of at most this many characters fits MAX_NETWORK_BYTES whatever they are (UTF-8: 4 bytes
# a character at most).
_ALWAYS_FITS = MAX_NETWORK_BYTES // 4


@dataclass(frozen=True, slots=True)
class PortedChunk:
    """Rows read since the previous chunk: (E.164 digits, network; "" un-ports), `line` the number of the
    last line read, the first MAX_PROBLEMS of the rows skipped as (line number, reason), and how many rows
    were skipped in all."""

    rows: tuple[tuple[str, str], ...]
    line: int
    problems: tuple[tuple[int, str], ...] = ()
    skipped: int = 0


def read_ported(
    lines: Iterable[str], *, known_networks: Collection[str] | None = None, chunk: int = 10_000
) -> Iterator[PortedChunk]:
    """Chunks of at most `chunk` rows from the lines of a portability CSV (a text file opened with
    encoding="utf-8" and newline="" works). A chunk ends after `chunk` data lines, used or skipped, so a
    file of bad rows still reports as it goes; the last chunk is yielded if it holds a row or a problem."""
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, not {chunk}")
    known = None if known_networks is None else frozenset(known_networks)
    # The networks a row may name without a closer look: known ones that fit (empty when any may go).
    quick = frozenset(k for k in known or () if len(k.encode()) <= MAX_NETWORK_BYTES)
    rows: list[tuple[str, str]] = []
    problems: list[tuple[int, str]] = []
    skipped = 0
    first = True
    n = 0
    for n, text in enumerate(lines, 1):
        # The usual line, `digits,network` with a known network (or a short one when any goes), is taken
        # here without a call: millions of them. Anything else takes the long way (_row), which decides
        # the same for these (tests/unit/routing/test_portability.py checks that both agree).
        fields = text.split(",")
        if len(fields) == 2 and '"' not in text:
            digits = fields[0].strip()
            network = fields[1].strip()
            if digits[:1] == "+":
                digits = digits[1:]
            elif digits[:2] == "00":
                digits = digits[2:]
            if (
                digits.isdigit() and digits.isascii() and len(digits) <= MAX_DIGITS and digits[0] != "0"
                and (network in quick or not network if known is not None else len(network) <= _ALWAYS_FITS)
            ):  # fmt: skip
                first = False
                rows.append((digits, network))
                if len(rows) + skipped >= chunk:
                    yield PortedChunk(tuple(rows), n, tuple(problems), skipped)
                    rows, problems, skipped = [], [], 0
                continue
        line = text.strip()
        if n == 1:
            line = line.removeprefix("\ufeff").strip()  # the byte order mark spreadsheets write
        if not line or line[0] == "#":
            continue
        row = _row(line, known)
        if first:
            first = False
            if isinstance(row, str) and _is_header(line):
                continue
        if isinstance(row, str):
            skipped += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append((n, row))
        else:
            rows.append(row)
        if len(rows) + skipped >= chunk:
            yield PortedChunk(tuple(rows), n, tuple(problems), skipped)
            rows, problems, skipped = [], [], 0
    if rows or skipped:
        yield PortedChunk(tuple(rows), n, tuple(problems), skipped)


def e164_digits(number: str) -> str | None:
    """The E.164 digits of `+CC...`, `00CC...` or `CC...`, or None when it is not 1-15 ASCII digits
    without a leading 0."""
    if number[:1] == "+":
        number = number[1:]
    elif number[:2] == "00":
        number = number[2:]
    if 0 < len(number) <= MAX_DIGITS and number.isascii() and number.isdigit() and number[0] != "0":
        return number
    return None


def _row(line: str, known: frozenset[str] | None) -> tuple[str, str] | str:
    """The row of one non-blank line, or why it is skipped."""
    try:
        fields = line.split(",") if '"' not in line else next(csv.reader([line]), [])
    except csv.Error as err:  # a quoted field over the csv module's limit, a stray quote
        return f"unreadable: {err}"
    if len(fields) != 2:
        return f"{len(fields)} field{'s' * (len(fields) != 1)}, expected number,network"
    raw, network = fields[0].strip(), fields[1].strip()
    number = e164_digits(raw)
    if number is None:
        return f"number {raw[:_QUOTE]!r} is not E.164 (1-{MAX_DIGITS} digits after + or 00, no leading 0)"
    if network:
        if known is not None and network not in known:
            return f"unknown network {network[:_QUOTE]!r}"
        if len(network) * 4 > MAX_NETWORK_BYTES and len(network.encode()) > MAX_NETWORK_BYTES:
            return f"network {network[:_QUOTE]!r}... is over {MAX_NETWORK_BYTES} bytes"
    return number, network


def _is_header(line: str) -> bool:
    return [f.strip().lower() for f in line.split(",")] == _HEADER
