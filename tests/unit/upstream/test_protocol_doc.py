"""docs/protocol.md is the contract: its error table and its byte example must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.upstream.errors import ErrorCode
from gateway.upstream.frames import encode_frame
from gateway.upstream.schema import Op

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
