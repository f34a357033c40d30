"""The arguments of `batch` create/add/send/stop and `template` (gateway/admin/commands.py): each mistake is
refused naming the argument at fault, never guessed at."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.admin.commands import BatchEdit, TemplateCommand, parse_command
from gateway.upstream.errors import InvalidRequest


def test_a_batch_create_reads_every_setting() -> None:
    cmd = parse_command("batch", {"action": "create", "batch_id": "spring", "template": "coupon", "sender": "ACME",
                                  "class": "notification", "at": 1796371200, "every": "weekly",
                                  "until": 1798000000.5, "time_zone": "Asia/Shanghai", "receipt": False})  # fmt: skip
    assert cmd == BatchEdit("create", None, "spring", "notification", "ACME", "", "coupon", 1796371200.0, "weekly",
                            1798000000.5, "Asia/Shanghai", 0, False)  # fmt: skip


def test_rows_are_numbers_or_maps_of_values() -> None:
    rows = ["447700900001", {"to": "447700900002", "vars": {"n": "A", "c": 7}}]
    cmd = parse_command("batch", {"action": "add", "batch_id": "b", "first": 1000, "rows": rows})
    assert isinstance(cmd, BatchEdit)
    assert cmd.first == 1000
    assert cmd.rows == (("447700900001", ()), ("447700900002", (("n", "A"), ("c", "7"))))


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"action": "create", "batch_id": "b", "sender": "S"}, "args.text"),  # neither text nor template
        ({"action": "create", "batch_id": "b", "sender": "S", "text": "t", "template": "x"}, "args.text"),
        ({"action": "create", "batch_id": "b#2", "sender": "S", "text": "t"}, "args.batch_id"),
        ({"action": "create", "batch_id": "b", "text": "t"}, "args.sender"),
        ({"action": "create", "batch_id": "b", "sender": "S", "text": "t", "every": "hourly"}, "args.every"),
        ({"action": "create", "batch_id": "b", "sender": "S", "text": "t", "every": "daily"}, "args.at"),
        ({"action": "create", "batch_id": "b", "sender": "S", "text": "t", "at": 10, "until": 5}, "args.until"),
        ({"action": "create", "batch_id": "b", "sender": "S", "text": "t", "at": True}, "args.at"),
        ({"action": "create", "batch_id": "b", "sender": "S", "text": "t", "class": "spam"}, "args.class"),
        ({"action": "create", "batch_id": "b", "sender": "S", "text": "t", "first": 3}, "args.first"),
        ({"action": "add", "batch_id": "b", "rows": []}, "args.rows"),
        ({"action": "add", "batch_id": "b", "rows": ["1"] * 1001}, "args.rows"),
        ({"action": "add", "batch_id": "b", "rows": [{"to": "1", "extra": 1}]}, "args.rows[0]"),
        ({"action": "add", "batch_id": "b", "rows": ["1", {"to": 5}]}, "args.rows[1].to"),
        ({"action": "add", "batch_id": "b", "rows": [{"to": "1", "vars": {"v": "x" * 161}}]}, "args.rows[0].vars.v"),
        ({"action": "add", "batch_id": "b", "rows": [{"to": "1", "vars": ["x"]}]}, "args.rows[0].vars"),
        ({"action": "add", "batch_id": "b", "first": -1, "rows": ["1"]}, "args.first"),
        ({"action": "stop"}, "args.batch_id"),
        ({"action": "send", "batch_id": "b", "rows": ["1"]}, "args.rows"),
    ],
)
def test_batch_mistakes_name_their_argument(args: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_command("batch", args)
    assert refused.value.field == field


def test_template_commands() -> None:
    assert parse_command("template", {"action": "list"}) == TemplateCommand("list")
    args: dict[str, Any] = {"action": "create", "template_id": "t", "text": "Hi {n}", "class": "notification"}
    made = parse_command("template", args)
    assert made == TemplateCommand("create", None, "t", "Hi {n}", "notification")
    sample = parse_command("template", {"action": "preview", "template_id": "t", "vars": {"n": "Ann"}})
    assert sample == TemplateCommand("preview", None, "t", values=(("n", "Ann"),))
    for args, field in (
        ({"action": "preview", "template_id": "t", "vars": {"n": "x" * 161}}, "args.vars.n"),
        ({"action": "reject", "template_id": "t"}, "args.reason"),
        ({"action": "create", "template_id": "t"}, "args.text"),
        ({"action": "show"}, "args.template_id"),
        ({"action": "publish", "template_id": "t"}, "args.action"),
    ):
        with pytest.raises(InvalidRequest) as refused:
            parse_command("template", args)
        assert refused.value.field == field
