"""docs/protocol.md is the contract: its error table and its byte example must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.lifecycle import REASONS
from gateway.upstream.errors import ErrorCode
from gateway.upstream.frames import encode_frame
from gateway.upstream.schema import (
    MAX_ID,
    MAX_SCHEDULE_AT,
    MAX_SEQ,
    MAX_VALIDITY_SECONDS,
    MAX_VERSION,
    MAX_WINDOW,
    Op,
)

DOC = (Path(__file__).parents[3] / "docs" / "protocol.md").read_text(encoding="utf-8")


def test_error_code_table_lists_exactly_the_codes() -> None:
    table = DOC.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE))
    assert documented == {code.value for code in ErrorCode}


def test_every_op_has_a_section() -> None:
    sections = set(re.findall(r"^### ([a-z]+)$", DOC, flags=re.MULTILINE))
    assert sections == {op.value for op in Op}


def test_byte_example_is_what_the_codec_writes() -> None:
    match = re.search(r"Frame bytes of `\{\"op\": \"ping\", \"id\": 7\}`: `([0-9a-f ]+)`", DOC)
    assert match is not None
    assert bytes.fromhex(match.group(1)) == encode_frame({"op": "ping", "id": 7})


def section(title: str) -> str:
    return DOC.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_reason_code_table_lists_every_reason_sent() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+:?)[^`]*` \|", section("Reason codes"), flags=re.MULTILINE))
    assert set(REASONS) | {"purged"} <= documented


def test_numeric_ranges_table_states_the_ranges_the_schema_checks() -> None:
    table = section("Numeric ranges")
    for value in (MAX_SCHEDULE_AT, MAX_VALIDITY_SECONDS, MAX_VERSION, MAX_WINDOW):
        assert f"{value:,}" in table
    assert MAX_SEQ == MAX_ID == 2**63 - 1
    assert "| `seq` | ack | int | 0 .. 2^63-1" in table
    assert "| `after` | subscribe | int | 0 .. 2^63-1 |" in table
