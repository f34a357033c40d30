# ruff: noqa: RUF001 - full-width digits and punctuation, as handsets and platforms send them
"""The route table: which rule takes a recipient, which carriers in what order, and why others were left out."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from gateway.routing.content import WordLists
from gateway.routing.numbers import Number, NumberBook
from gateway.routing.router import CarrierProfile, Connection, NetworkTable, Plan, Refusal, Router, RouteRule
from gateway.segmenting import Encoding, RouteEncoding, SplitMethod

BOOK = NumberBook()
GSM_UCS2 = RouteEncoding(encodings=frozenset({Encoding.GSM7, Encoding.UCS2}), split=SplitMethod.UDH8)
UCS2_ONLY = RouteEncoding(encodings=frozenset({Encoding.UCS2}), split=SplitMethod.UDH8)
SAR = RouteEncoding(encodings=frozenset({Encoding.GSM7, Encoding.UCS2}), split=SplitMethod.SAR)
ONE_PART = RouteEncoding(encodings=frozenset({Encoding.GSM7, Encoding.UCS2}), max_parts=1)

CHINA = NetworkTable({
    "china-mobile": ["86134", "86135", "86136", "86137", "86138", "86139", "86147", "86150", "86198"],
    "china-unicom": ["86130", "86131", "86132", "86145", "86155", "86186"],
    "china-telecom": ["86133", "86149", "86153", "86189", "86199"],
})  # fmt: skip


def num(raw: str) -> Number:
    found = BOOK.parse(raw)
    assert isinstance(found, Number), found
    return found


def router(rules: list[RouteRule], carriers: dict[str, CarrierProfile] | None = None, **kw: object) -> Router:
    if carriers is None:
        carriers = {c.carrier: CarrierProfile(GSM_UCS2) for r in rules for c in r.connections}
    return Router(rules, carriers, networks=CHINA, **kw)  # type: ignore[arg-type]


def decide(r: Router, number: str, text: str = "hello", *, account: str = "acme", cls: str = "notification",
           sender: str = "ACME", rng: random.Random | None = None) -> Plan | Refusal:  # fmt: skip
    return r.decide(num(number), account=account, message_class=cls, sender=sender, text=text,
                    rng=rng or random.Random(1))  # fmt: skip


def rule(name: str, *carriers: str, **kw: object) -> RouteRule:
    return RouteRule(name, tuple(Connection(c, priority=i + 1) for i, c in enumerate(carriers)), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("number", "cls", "account", "sender", "expected"),
    [
        ("+8613800138000", "marketing", "acme", "ACME", "cn-mobile-marketing"),  # network and class
        ("+8613800138000", "notification", "acme", "ACME", "cn-mobile"),  # network only
        ("+8613012345678", "notification", "acme", "ACME", "cn-prefix"),  # unicom: by prefix 86
        ("+8613012345678", "verification", "bank", "ACME", "bank-otp"),  # account and class, earlier in order
        ("+447400123456", "notification", "acme", "SHOP", "gb-shop"),  # country and sender
        ("+447400123456", "notification", "acme", "ACME", "default"),
        ("+33612345678", "marketing", "acme", "ACME", "default"),
    ],
)
def test_the_first_rule_whose_conditions_all_hold_takes_the_recipient(
    number: str, cls: str, account: str, sender: str, expected: str
) -> None:
    r = router([
        rule("cn-mobile-marketing", "a", networks=frozenset({"china-mobile"}), classes=frozenset({"marketing"})),
        rule("bank-otp", "b", accounts=frozenset({"bank"}), classes=frozenset({"verification"})),
        rule("cn-mobile", "a", networks=frozenset({"china-mobile"})),
        rule("cn-prefix", "b", prefixes=("86",)),
        rule("gb-shop", "c", countries=frozenset({"GB"}), senders=frozenset({"SHOP"})),
        rule("default", "c"),
    ])  # fmt: skip
    plan = decide(r, number, cls=cls, account=account, sender=sender)
    assert isinstance(plan, Plan)
    assert plan.route == expected


def test_no_rule_is_no_route_with_the_number_and_its_network() -> None:
    r = router([rule("cn", "a", networks=frozenset({"china-unicom"}))])
    refusal = decide(r, "+8613800138000")
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "no_route"
    assert "8613800138000" in refusal.detail
    assert "china-mobile" in refusal.detail


def test_highest_priority_first_then_the_rest_in_priority_order() -> None:
    r = router([RouteRule("r", (Connection("backup", priority=2), Connection("main", priority=1),
                                Connection("last", priority=3)))])  # fmt: skip
    plan = decide(r, "+447400123456")
    assert isinstance(plan, Plan)
    assert plan.carriers == ("main", "backup", "last")


def test_weights_share_the_messages_among_carriers_of_equal_priority() -> None:
    r = router([RouteRule("r", (Connection("a", 1, weight=3), Connection("b", 1, weight=1),
                                Connection("z", 2, weight=100)))])  # fmt: skip
    rng = random.Random(7)
    firsts: Counter[str] = Counter()
    for _ in range(4000):
        plan = decide(r, "+447400123456", rng=rng)
        assert isinstance(plan, Plan)
        assert plan.carriers[2] == "z"  # a lower priority never goes before, whatever its weight
        firsts[plan.carriers[0]] += 1
    assert 0.70 < firsts["a"] / 4000 < 0.80  # 3 : 1


def test_least_cost_counts_the_parts_each_carrier_needs_with_its_own_encodings() -> None:
    # 100 GSM characters: 1 part where GSM 7-bit is allowed, 2 parts (UCS-2, 67 per part) where it is not.
    text = "x" * 100
    carriers = {"cheap-ucs2": CarrierProfile(UCS2_ONLY), "dear-gsm": CarrierProfile(GSM_UCS2)}
    rules = [RouteRule("r", (Connection("cheap-ucs2", cost=0.03), Connection("dear-gsm", cost=0.05)),
                       strategy="least_cost")]  # fmt: skip
    plan = decide(router(rules, carriers), "+447400123456", text)
    assert isinstance(plan, Plan)
    assert plan.carriers == ("dear-gsm", "cheap-ucs2")  # 0.05 x 1 < 0.03 x 2
    assert plan.parts == (1, 2)
    short = decide(router(rules, carriers), "+447400123456", "hi")
    assert isinstance(short, Plan)
    assert short.carriers == ("cheap-ucs2", "dear-gsm")


def test_a_text_one_carrier_blocks_goes_to_one_that_takes_it() -> None:
    words = WordLists({"cn-finance": ["贷款", "代开发票"], "cn-gambling": ["博彩"]})
    carriers = {
        "strict": CarrierProfile(GSM_UCS2, frozenset({"cn-finance", "cn-gambling"})),
        "lenient": CarrierProfile(GSM_UCS2, frozenset({"cn-gambling"})),
    }
    r = router([rule("cn", "strict", "lenient")], carriers, words=words)
    plan = decide(r, "+8613800138000", "低息贷 款，快来办理")
    assert isinstance(plan, Plan)
    assert plan.carriers == ("lenient",)
    assert plan.left_out == (("strict", "content_blocked"),)
    assert "贷款" in plan.detail
    assert "cn-finance" in plan.detail
    clean = decide(r, "+8613800138000", "您的验证码是123456")
    assert isinstance(clean, Plan)
    assert clean.carriers == ("strict", "lenient")


def test_a_text_every_carrier_blocks_is_refused_with_the_word_and_its_list() -> None:
    words = WordLists({"gambling": ["casino"]})
    gambling = frozenset({"gambling"})
    carriers = {"a": CarrierProfile(GSM_UCS2, gambling), "b": CarrierProfile(SAR, gambling)}
    refusal = decide(router([rule("r", "a", "b")], carriers, words=words), "+447400123456", "Best C-A-S-I-N-O bonus")
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "content_blocked"
    assert "'casino'" in refusal.detail
    assert "gambling" in refusal.detail
    assert "route r" in refusal.detail


def test_a_carrier_that_cannot_take_the_length_is_left_out_and_none_means_too_long() -> None:
    carriers = {"short": CarrierProfile(ONE_PART), "long": CarrierProfile(GSM_UCS2)}
    text = "y" * 300
    plan = decide(router([rule("r", "short", "long")], carriers), "+447400123456", text)
    assert isinstance(plan, Plan)
    assert plan.carriers == ("long",)
    assert plan.parts == (2,)
    assert plan.left_out == (("short", "message_too_long"),)
    refusal = decide(router([rule("r", "short")], {"short": CarrierProfile(ONE_PART)}), "+447400123456", text)
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "message_too_long"


def test_carriers_with_equal_encodings_are_each_named_in_their_own_refusal() -> None:
    """fit() works a text's parts out once per encoding; each carrier's reason and detail stay its own."""
    gsm_only = RouteEncoding(encodings=frozenset({Encoding.GSM7}), max_parts=1)
    carriers = {"one": CarrierProfile(gsm_only), "two": CarrierProfile(gsm_only), "wide": CarrierProfile(GSM_UCS2)}
    r = router([rule("r", "one", "two", "wide")], carriers)
    for text, reason in (("y" * 300, "message_too_long"), ("贷款", "not_encodable")):
        plan = decide(r, "+447400123456", text)
        assert isinstance(plan, Plan)
        assert plan.carriers == ("wide",)
        assert plan.left_out == (("one", reason), ("two", reason))
        one, two = plan.detail.split("; ")
        assert "one" in one
        assert "two" not in one
        assert "two" in two
        assert "one" not in two
        assert r.fit(text, "two") == (reason, *r.fit(text, "one")[1:2], two)


def test_a_plan_kept_for_a_text_is_the_plan_worked_out_afresh() -> None:
    """decide keeps what a rule's carriers make of a text; a recipient after the first gets the same answer
    (and its own draw of the order) as a fresh router gives, with or without the caller's scan."""
    words = WordLists({"fin": ["贷款"]})
    carriers = {"a": CarrierProfile(GSM_UCS2, frozenset({"fin"})), "b": CarrierProfile(UCS2_ONLY),
                "c": CarrierProfile(ONE_PART)}  # fmt: skip
    rules = [RouteRule("r", (Connection("a", 1, weight=2), Connection("b", 1), Connection("c", 1, weight=3)))]
    kept = router(rules, carriers, words=words)
    for text in ("hello", "低息贷款", "x" * 200, "hello"):
        for seed in range(20):
            fresh = router(rules, carriers, words=words)
            expected = decide(fresh, "+447400123456", text, rng=random.Random(seed))
            assert decide(kept, "+447400123456", text, rng=random.Random(seed)) == expected
            got = kept.decide(num("+447400123456"), account="acme", message_class="notification", sender="ACME",
                              text=text, rng=random.Random(seed), scan=kept.scan_text(text))  # fmt: skip
            assert got == expected


def test_a_route_for_mobiles_refuses_a_fixed_line() -> None:
    r = router([rule("r", "a", mobile_only=True)])
    refusal = decide(r, "+442079460018")
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "invalid_number"
    assert "not_mobile" in refusal.detail
    assert isinstance(decide(r, "+447400123456"), Plan)


def test_network_blocks_longest_first_and_a_ported_number_overrides() -> None:
    table = NetworkTable({"a": ["8613"], "b": ["86138"]})
    assert table.network_of("8613800138000") == "b"
    assert table.network_of("8613900138000") == "a"
    assert table.network_of("447911123456") == ""
    r = router([rule("to-a", "ca", networks=frozenset({"a"})), rule("rest", "cr")])
    r = Router(r.rules, r.carriers, networks=table)
    ported = r.decide(num("+8613800138000"), account="x", message_class="notification", sender="", text="hi",
                      rng=random.Random(1), network="a")  # fmt: skip
    assert isinstance(ported, Plan)
    assert ported.route == "to-a"


@pytest.mark.parametrize(
    ("tables", "error"),
    [
        ({"a": ["86x"]}, "digits"),
        ({"a": ["86138"], "b": ["86138"]}, "both"),
    ],
)
def test_bad_network_tables_are_refused(tables: dict[str, list[str]], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        NetworkTable(tables)


def test_bad_route_tables_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        Router([rule("r", "a"), rule("r", "b")], {})
    with pytest.raises(ValueError, match="strategy"):
        Router([rule("r", "a", strategy="cheapest")], {})
    with pytest.raises(ValueError, match="weight"):
        Router([RouteRule("r", (Connection("a", weight=0),))], {})


def test_many_rules_find_the_same_first_match_as_a_scan_in_order() -> None:
    rng = random.Random(3)
    networks = ["china-mobile", "china-unicom", "china-telecom"]
    rules = []
    for i in range(300):
        kw: dict[str, object] = {}
        pick = rng.random()
        if pick < 0.3:
            kw["networks"] = frozenset(rng.sample(networks, rng.randint(1, 2)))
        elif pick < 0.6:
            kw["prefixes"] = tuple(rng.choice(["86", "861", "8613", "86138", "44", "447", "33"]) for _ in range(2))
        elif pick < 0.8:
            kw["countries"] = frozenset(rng.sample(["CN", "GB", "FR"], 1))
        if rng.random() < 0.5:
            kw["classes"] = frozenset(rng.sample(["marketing", "notification", "verification"], 1))
        if rng.random() < 0.3:
            kw["accounts"] = frozenset(rng.sample(["a", "b"], 1))
        rules.append(rule(f"r{i}", "c", **kw))
    r = router(rules)
    for number in ["+8613800138000", "+8613012345678", "+8613312345678", "+447400123456", "+33612345678"]:
        n = num(number)
        for cls in ["marketing", "notification", "verification"]:
            for account in ["a", "b", "c"]:
                net = CHINA.network_of(n.e164)
                expected = next((x for x in rules if x.matches_number(n, net) and x.matches_message(account, cls, "S")),
                                None)  # fmt: skip
                assert r.rule_for(n, account, cls, "S") is expected


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("447700900999", "by-number"), ("+447700900999", "by-number"), ("00447700900999", "by-number"),
        ("447700900998", "default"), ("+44 7700 900999", "default"), ("SHOP", "default"),
    ],
)  # fmt: skip
def test_a_numeric_sender_matches_however_it_is_written(sender: str, expected: str) -> None:
    r = router([rule("by-number", "a", senders=frozenset({"+447700900999"})), rule("default", "b")])
    plan = decide(r, "+447400123456", sender=sender)
    assert isinstance(plan, Plan)
    assert plan.route == expected
