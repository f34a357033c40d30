"""What several gateway nodes share, as values (gateway/cluster/core.py): the [cluster] table's checks, the
formats of list changes and handed-over receipts in Valkey's streams, stream ids as store cursors, the CHECK
script's arguments and answers, and what a node asks of the shared TPS budget."""

from __future__ import annotations

import itertools
import math

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cluster import core
from gateway.cluster.core import CapRule, ClusterConfig, HandedReceipt, ListChange
from gateway.lifecycle import Ev

# Text the formats carry: any unicode a str can encode (no lone surrogates), without the NUL the shared
# hashes use to join scope and number.
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=40)
U64 = st.integers(min_value=0, max_value=2**64 - 1)


# --- ClusterConfig --------------------------------------------------------------------------------------


def _fields(cfg: ClusterConfig) -> list[str]:
    return [name for name, _ in cfg.mistakes()]


@pytest.mark.parametrize("node", ["a", "node-1", "eu_west.2", "N" * 64, "0"])
def test_a_good_node_name_is_no_mistake(node: str) -> None:
    assert ClusterConfig(node=node).mistakes() == []


@pytest.mark.parametrize("node", ["", "a b", "a:b", "a/b", "a\0b", "a\nb", "é*", "N" * 65, "{a}", "a,b"])
def test_a_bad_node_name_is_a_mistake(node: str) -> None:
    assert _fields(ClusterConfig(node=node)) == ["node"]


@pytest.mark.parametrize("prefix", ["", "g w", "gw\0", " "])
def test_an_empty_prefix_or_one_with_a_space_or_nul_is_a_mistake(prefix: str) -> None:
    assert _fields(ClusterConfig(node="a", key_prefix=prefix)) == ["key_prefix"]


@pytest.mark.parametrize("prefix", ["gw", "prod:gw", "{gw}", "x"])
def test_a_plain_prefix_is_no_mistake(prefix: str) -> None:
    assert ClusterConfig(node="a", key_prefix=prefix).mistakes() == []


@pytest.mark.parametrize("node", ["nœud", "ä", "²"])
def test_a_node_name_valkey_refuses_as_a_client_name_is_a_mistake(node: str) -> None:
    assert _fields(ClusterConfig(node=node)) == ["node"]


def test_both_password_sources_are_a_mistake_either_alone_is_not() -> None:
    both = ClusterConfig(node="a", valkey_password_env="VK_PASS", valkey_password_file="/run/secrets/vk")
    assert _fields(both) == ["valkey_password_env"]
    assert ClusterConfig(node="a", valkey_password_env="VK_PASS").mistakes() == []
    assert ClusterConfig(node="a", valkey_password_file="/run/secrets/vk").mistakes() == []
    # Empty strings are unset: no conflict.
    assert ClusterConfig(node="a", valkey_password_env="", valkey_password_file="/f").mistakes() == []


def test_every_mistake_is_reported_at_once() -> None:
    cfg = ClusterConfig(node="", key_prefix="", valkey_password_env="E", valkey_password_file="F")
    assert _fields(cfg) == ["node", "key_prefix", "valkey_password_env"]


def test_held_classes_are_marketing_and_notification_by_default() -> None:
    cfg = ClusterConfig(node="a")
    assert cfg.held("marketing")
    assert cfg.held("notification")
    assert not cfg.held("verification")
    assert not cfg.held("transactional")
    assert not cfg.held("")


def test_held_follows_hold_classes() -> None:
    cfg = ClusterConfig(node="a", hold_classes=("verification",))
    assert cfg.held("verification")
    assert not cfg.held("marketing")
    assert not ClusterConfig(node="a", hold_classes=()).held("marketing")


# --- keys -----------------------------------------------------------------------------------------------


def test_key_names_under_a_prefix() -> None:
    k = core.Keys("p")
    assert (k.optout, k.blacklist, k.lists) == ("p:optout", "p:blacklist", "p:lists")
    assert k.handover("b") == "p:handover:b"
    assert k.receipt("carA", "0af3") == "p:r:carA\0" + "0af3"
    assert k.tps("carA") == ("p:tps:carA", "p:tpsn:carA")
    assert core.list_field("", "4477") == "\0" + "4477"
    assert core.list_field("account:acme", "4477") == "account:acme\0" + "4477"


# --- list changes and listings ----------------------------------------------------------------------------


CHANGES = st.builds(
    ListChange,
    table=st.sampled_from(["optout", "blacklist"]),
    number=TEXT,
    scope=TEXT,
    present=st.booleans(),
    source=TEXT,
    note=TEXT,
    at_ms=U64,
    node=TEXT,
)


@given(CHANGES)
def test_a_list_change_round_trips(change: ListChange) -> None:
    raw = core.pack_change(change)
    assert isinstance(raw, bytes)
    assert core.unpack_change(raw) == change


@given(at_ms=U64, source=TEXT, note=TEXT)
def test_a_listing_round_trips(at_ms: int, source: str, note: str) -> None:
    assert core.unpack_listing(core.pack_listing(at_ms, source, note)) == (at_ms, source, note)


def test_a_list_change_from_a_newer_version_or_of_an_unknown_table_is_refused() -> None:
    good = [core.VERSION, "optout", "4477", "", True, "api", "", 1, "a"]
    assert core.unpack_change(msgpack.packb(good)) == ListChange("optout", "4477", "", True, "api", "", 1, "a")
    for bad in (
        [core.VERSION + 1, *good[1:]],
        [0, *good[1:]],
        [core.VERSION, "whitelist", *good[2:]],
        good[:8],  # a field short
        {"version": core.VERSION},
        "optout",
        core.VERSION,
        None,
    ):
        with pytest.raises(ValueError, match="not a list change"):
            core.unpack_change(msgpack.packb(bad))


def test_a_newer_change_with_more_fields_is_still_read() -> None:
    raw = msgpack.packb([core.VERSION, "blacklist", "4477", "account:x", False, "", "", 5, "b", "later"])
    assert core.unpack_change(raw) == ListChange("blacklist", "4477", "account:x", False, "", "", 5, "b")


# --- receipts handed over --------------------------------------------------------------------------------

RECEIPTS = st.builds(
    HandedReceipt,
    carrier=TEXT,
    carrier_id=TEXT,
    kind=st.sampled_from(list(Ev)),
    reason=TEXT,
    alternatives=st.lists(TEXT, max_size=4).map(tuple),
    raw_id=TEXT,
    text=st.binary(max_size=200),
    via=TEXT,
)


@given(RECEIPTS)
def test_a_handed_receipt_round_trips(receipt: HandedReceipt) -> None:
    back = core.unpack_receipt(core.pack_receipt(receipt))
    assert back == receipt
    assert type(back.kind) is Ev
    assert type(back.text) is bytes
    assert type(back.alternatives) is tuple


def test_a_handed_receipt_of_another_version_or_an_unknown_kind_is_refused() -> None:
    good = [core.VERSION, "carA", "0af3", int(Ev.RECEIPT_DELIVERED), "", [], "", b"id:0af3", "b"]
    assert core.unpack_receipt(msgpack.packb(good)).kind is Ev.RECEIPT_DELIVERED
    for bad in ([core.VERSION + 1, *good[1:]], good[:8], {"v": 1}, b"raw", [core.VERSION]):
        with pytest.raises(ValueError, match="not a handed-over receipt"):
            core.unpack_receipt(msgpack.packb(bad))
    for kind in (0, 999, -1, "delivered"):
        with pytest.raises(ValueError, match="unknown receipt kind"):
            core.unpack_receipt(msgpack.packb([*good[:3], kind, *good[4:]]))


@pytest.mark.parametrize("unpack", [core.unpack_change, core.unpack_receipt, core.unpack_listing])
@pytest.mark.parametrize(
    "raw",
    [b"", b"\xc1", b"\x92", b"\x93\x01", b"\x81\x90\x01", b"\xd6\xff\x00\x00\x00\x01", b"\xff" * 9, b"\x00extra"],
)
def test_garbage_raises_value_error(unpack: object, raw: bytes) -> None:
    assert callable(unpack)
    with pytest.raises(ValueError):  # noqa: PT011 - msgpack's own messages vary; the class is the contract
        unpack(raw)


@given(st.binary(max_size=64))
def test_any_bytes_unpack_as_a_change_or_raise_value_error(raw: bytes) -> None:
    # What a stream entry may hold is not ours to trust: anything else than ValueError would escape the
    # loops' `except ValueError` and stop them on the same entry for ever.
    for unpack in (core.unpack_change, core.unpack_receipt):
        try:
            unpack(raw)
        except ValueError:
            pass


@pytest.mark.parametrize(
    ("unpack", "fields"),
    [
        (core.unpack_change, [core.VERSION, "optout", "4477", "", True, "", "", None, "a"]),
        (core.unpack_receipt, [core.VERSION, "carA", "0af3", int(Ev.RECEIPT_DELIVERED), "", 5, "", b"", "b"]),
        (core.unpack_receipt, [core.VERSION, "carA", "0af3", int(Ev.RECEIPT_DELIVERED), "", [], "", "text", "b"]),
    ],
)
def test_an_entry_with_a_field_of_the_wrong_type_raises_value_error(unpack: object, fields: list[object]) -> None:
    assert callable(unpack)
    with pytest.raises(ValueError):  # noqa: PT011
        unpack(msgpack.packb(fields))


# --- stream ids as cursors -----------------------------------------------------------------------------

MS = st.integers(min_value=0, max_value=2**42)
SEQ = st.integers(min_value=0, max_value=2**21 - 1)


@given(MS, SEQ)
def test_a_stream_id_round_trips_through_its_cursor(ms: int, seq: int) -> None:
    text = f"{ms}-{seq}"
    cursor = core.stream_cursor(text)
    assert core.stream_cursor(text.encode()) == cursor
    assert core.stream_id(cursor) == text
    assert 0 <= cursor < 2**64  # the store's cursors are u64


@given(st.lists(st.tuples(MS, SEQ), min_size=2, max_size=30, unique=True))
def test_cursors_keep_the_order_of_stream_ids(ids: list[tuple[int, int]]) -> None:
    ids.sort()
    cursors = [core.stream_cursor(f"{ms}-{seq}") for ms, seq in ids]
    assert all(a < b for a, b in itertools.pairwise(cursors))


def test_stream_cursor_edges() -> None:
    assert core.stream_cursor("0-0") == 0
    assert core.stream_id(0) == "0-0"
    assert core.stream_cursor("5") == core.stream_cursor("5-0")  # an id without its sequence
    assert core.stream_cursor("1-0") == core.stream_cursor("0-2097151") + 1
    # A sequence past 21 bits is clamped: still after every smaller id of its millisecond, before the next.
    assert core.stream_cursor("7-3000000") == core.stream_cursor("7-2097151")
    assert core.stream_cursor("7-3000000") < core.stream_cursor("8-0")
    # Today's Valkey ids.
    now = "1767225600000-12"
    assert core.stream_id(core.stream_cursor(now)) == now


# --- the check at accept ---------------------------------------------------------------------------------


def test_check_args_lay_out_each_group_its_caps_then_its_numbers() -> None:
    day = CapRule("daily", "*", 86400, 1)
    hour = CapRule("hourly", "acme", 3600, 3)
    groups: list[tuple[str, bool, tuple[CapRule, ...], list[str]]] = [
        ("acme", True, (day, hour), ["4477001", "4477004"]),
        ("beta", False, (), ["4477002"]),
        ("acme", True, (hour,), ["4477003"]),
    ]
    assert core.check_args(groups) == [
        "acme", "1", 2, "daily", "*", 86_400_000, 1, "hourly", "acme", 3_600_000, 3, 2, "4477001", "4477004",
        "beta", "0", 0, 1, "4477002",
        "acme", "1", 1, "hourly", "acme", 3_600_000, 3, 1, "4477003",
    ]  # fmt: skip
    assert core.check_args([]) == []


def test_verdict_codes() -> None:
    caps = (CapRule("daily", "*", 86400, 1), CapRule("weekly", "acme", 604800, 5))
    assert core.verdict(0, "acme", "marketing", caps) == ("", "")
    assert core.verdict(1, "acme", "marketing", caps) == ("blacklisted", "on the gateway's blacklist")
    assert core.verdict(2, "acme", "marketing", caps) == ("blacklisted", "on account acme's blacklist")
    reason, detail = core.verdict(3, "acme", "marketing", caps)
    assert reason == "opted_out"
    assert "every account's marketing" in detail
    reason, detail = core.verdict(4, "acme", "notification", caps)
    assert reason == "opted_out"
    assert "account acme's notification" in detail
    assert core.verdict(10, "acme", "marketing", caps) == (
        "frequency_capped",
        "rule daily: at most 1 in 86400 s, across the nodes",
    )
    assert core.verdict(11, "acme", "marketing", caps)[1] == "rule weekly: at most 5 in 604800 s, across the nodes"
    # A cap index the submit does not have (a script from another version): still capped, without a rule.
    assert core.verdict(12, "acme", "marketing", caps)[0] == "frequency_capped"
    assert core.verdict(10, "acme", "marketing", ())[0] == "frequency_capped"
    for code, reason in core.LISTED.items():
        assert core.verdict(code, "acme", "marketing", caps)[0] == reason


def test_the_check_script_answers_the_codes_verdict_reads() -> None:
    # The script and `verdict` must agree on the numbers: each code the script can return is one verdict reads.
    for code in (1, 2, 3, 4):
        assert f"verdict = {code}" in core.CHECK
    assert "verdict = 10 + c" in core.CHECK


def test_unpack_int_list_takes_lists_and_tuples() -> None:
    assert core.unpack_int_list([0, 1, 10]) == [0, 1, 10]
    assert core.unpack_int_list((3, b"4")) == [3, 4]
    assert core.unpack_int_list(()) == []


# --- TPS ---------------------------------------------------------------------------------------------------


def test_tps_want() -> None:
    # A full tick at 100 TPS is 10 tokens.
    assert core.tps_want(100, 0, starved=True) == 10
    assert core.tps_want(100, 0, starved=False) == 0  # idle: asks for nothing
    assert core.tps_want(100, 1, starved=False) == 2  # used and a little more (at least one)
    assert core.tps_want(100, 4, starved=False) == 6  # half as much again
    assert core.tps_want(100, 8, starved=False) == 10  # never above a full tick
    assert core.tps_want(100, 50, starved=False) == 10
    assert core.tps_want(100, 3, starved=True) == 10
    # Below ten a second a tick is still worth one token.
    assert core.tps_want(1, 0, starved=True) == 1
    assert core.tps_want(5, 1, starved=False) == 1
    assert core.tps_want(15, 0, starved=True) == 2  # rounded up


@given(
    rate=st.floats(min_value=0.1, max_value=1e6), used=st.integers(min_value=0, max_value=10**6), starved=st.booleans()
)
def test_tps_want_is_at_most_a_tick_and_nothing_only_when_idle(rate: float, used: int, starved: bool) -> None:
    want = core.tps_want(rate, used, starved)
    full = max(1, math.ceil(rate / core.TICKS_PER_SECOND))
    assert 0 <= want <= full
    assert (want == 0) == (not used and not starved)
    if starved:
        assert want == full
    elif used:
        assert want >= min(full, used + 1)


def test_a_claim_on_a_node_name_outlives_three_renewals() -> None:
    assert core.claim_ttl_ms(0.5) == 3000  # at least 3 s: a killed node's name is free again soon after
    assert core.claim_ttl_ms(1.0) == 3000
    assert core.claim_ttl_ms(2.5) == 7500  # three renewals, each of which may take the whole timeout
