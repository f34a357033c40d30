
"""Routing throughput: route decisions and number checks, as the engine makes them per recipient.

The table of issue 12: 1,000 routes (by network, prefix, country, class and account, most of them never
matching the sample numbers, the last ones the defaults), 10,000 network blocks (E.164 prefixes of 5-7
digits over 40 networks), three carriers with 5,000 blocked words each (bench/content.py's lists), a
70-character Chinese text and a 300-character GSM text.

- route_decisions_per_s: Router.decide for a parsed number, no scan given (decide scans the text when the
  rule's carriers block words). The router keeps what a rule's carriers make of a text (scan, fits) per
  (rule, text), so with these two texts only the first decisions scan: the rest cost the rule lookup and
  the draw of the order.
- route_decisions_per_s_shared_scan: the same with the text scanned once per request, as Engine.submit does
  for the recipients of one request.
- route_decisions_per_s_scan_each: Router.scan_text then Router.decide per decision: what Engine.submit
  does for requests of one recipient each (submit_sm), the same texts again and again.
- route_decisions_per_s_unique_text: every decision a text not seen before (the sample texts with another
  4-digit number in them, lengths unchanged; more texts than the router keeps): the scan, the parts with
  each carrier and the plan worked out every time, the worst case (every recipient a text of its own).
- number_checks_per_s: NumberBook.parse of E.164 and national numbers of several countries.

Portability lookups and the import (portability_lookups_per_s, portability_import_s) are measured by
bench/portability.py.

Run: .venv/bin/python bench/routing.py [--seconds 1.5]. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from content import CJK_70, GSM_300, random_lists  # the bench directory's siblings
from rates import rate

from gateway.routing.content import WordLists
from gateway.routing.numbers import Number, NumberBook
from gateway.routing.router import CarrierProfile, Connection, NetworkTable, Router, RouteRule
from gateway.segmenting import Encoding, RouteEncoding, SplitMethod

CARRIERS = {
    "cmcc": CarrierProfile(RouteEncoding(encodings=frozenset({Encoding.GSM7, Encoding.UCS2})), frozenset({"a"})),
    "cucc": CarrierProfile(RouteEncoding(encodings=frozenset({Encoding.UCS2}), split=SplitMethod.SAR),
                           frozenset({"b"})),
    "ctcc": CarrierProfile(RouteEncoding(encodings=frozenset({Encoding.GSM7, Encoding.UCS2})),
                           frozenset({"a", "b", "c"})),
}
NUMBERS = ["+8613800138000", "+8613012345678", "+8618912345678", "+447400123456", "+33612345678",
           "+12015550123", "+4915123456789", "+8613912345678"]  # fmt: skip
NATIONAL = [("13800138000", "CN"), ("07400123456", "GB"), ("0612345678", "FR"), ("2015550123", "US")]


def table(rng: random.Random) -> tuple[list[RouteRule], NetworkTable]:
    networks: dict[str, list[str]] = {f"net{i}": [] for i in range(40)}
    seen: set[str] = set()
    while len(seen) < 10_000:
        block = "86" + str(rng.randint(130, 199)) + "".join(rng.choices("0123456789", k=rng.randint(1, 3)))
        if block not in seen:
            seen.add(block)
            networks[f"net{rng.randrange(40)}"].append(block)
    rules = []
    names = list(CARRIERS)
    for i in range(995):
        kind = i % 4
        kw: dict[str, object] = {}
        if kind == 0:
            kw["networks"] = frozenset({f"net{rng.randrange(40)}"})
            kw["accounts"] = frozenset({f"acct{rng.randrange(50)}"})  # never the sample account
        elif kind == 1:
            kw["prefixes"] = (f"86{rng.randint(130, 199)}{rng.randint(0, 99)}",)
            kw["senders"] = frozenset({f"S{rng.randrange(100)}"})
        elif kind == 2:
            kw["countries"] = frozenset({rng.choice(["DE", "FR", "US", "GB", "CN"])})
            kw["classes"] = frozenset({"verification"})
            kw["accounts"] = frozenset({f"acct{rng.randrange(50)}"})
        else:
            kw["accounts"] = frozenset({f"acct{rng.randrange(50)}"})
        connections = tuple(Connection(c, priority=rng.randint(1, 2), weight=rng.randint(1, 5), cost=rng.random())
                            for c in rng.sample(names, rng.randint(1, 3)))  # fmt: skip
        rules.append(RouteRule(f"r{i}", connections, strategy=rng.choice(["priority", "least_cost"]), **kw))  # type: ignore[arg-type]
    everyone = tuple(Connection(c, priority=1, weight=1 + i, cost=0.03 + 0.01 * i) for i, c in enumerate(names))
    rules += [
        RouteRule("cn-mobile-marketing", everyone, countries=frozenset({"CN"}), classes=frozenset({"marketing"}),
                  strategy="least_cost", mobile_only=True),
        RouteRule("cn", everyone, prefixes=("86",)),
        RouteRule("gb", everyone, countries=frozenset({"GB"})),
        RouteRule("us", everyone, countries=frozenset({"US"})),
        RouteRule("default", everyone),
    ]  # fmt: skip
    return rules, NetworkTable(networks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args()
    rng = random.Random(12)
    built = time.perf_counter()
    rules, networks = table(rng)
    words = WordLists(random_lists(7))
    router = Router(rules, CARRIERS, networks=networks, words=words)
    book = NumberBook()
    build_s = time.perf_counter() - built
    numbers = [n for n in (book.parse(x) for x in NUMBERS) if isinstance(n, Number)]
    texts = [CJK_70, GSM_300]
    classes = ["marketing", "notification", "verification"]
    pick = random.Random(3)

    def decision(i: int) -> object:
        return router.decide(numbers[i % len(numbers)], account="demo", message_class=classes[i % 3],
                             sender="ACME", text=texts[i % 2], rng=pick)  # fmt: skip

    scans = [words.scan(t) for t in texts]

    def shared(i: int) -> object:
        return router.decide(numbers[i % len(numbers)], account="demo", message_class=classes[i % 3],
                             sender="ACME", text=texts[i % 2], rng=pick, scan=scans[i % 2])  # fmt: skip

    def scan_each(i: int) -> object:
        text = texts[i % 2]
        return router.decide(numbers[i % len(numbers)], account="demo", message_class=classes[i % 3],
                             sender="ACME", text=text, rng=pick, scan=router.scan_text(text))  # fmt: skip

    # 2 x 10,000 texts, more than the router keeps (4,096 per table): each decision misses.
    unique = [t.replace(code, f"{k:04d}", 1) for k in range(10_000) for t, code in ((CJK_70, "8842"),
                                                                                    (GSM_300, "4711"))]  # fmt: skip
    assert {len(t) for t in unique} == {len(t) for t in texts}

    def unique_text(i: int) -> object:
        return router.decide(numbers[i % len(numbers)], account="demo", message_class=classes[i % 3],
                             sender="ACME", text=unique[i % len(unique)], rng=pick)  # fmt: skip

    inputs = [(n, "") for n in NUMBERS] + NATIONAL
    calls = itertools.count()

    def check(i: int) -> object:
        raw, region = inputs[i % len(inputs)]
        return book.parse(raw, region)

    result = {
        "route_decisions_per_s": round(rate(lambda: decision(next(calls)), args.seconds)),
        "route_decisions_per_s_shared_scan": round(rate(lambda: shared(next(calls)), args.seconds)),
        "route_decisions_per_s_scan_each": round(rate(lambda: scan_each(next(calls)), args.seconds)),
        "route_decisions_per_s_unique_text": round(rate(lambda: unique_text(next(calls)), args.seconds)),
        "number_checks_per_s": round(rate(lambda: check(next(calls)), args.seconds)),
        "routes": len(rules),
        "network_blocks": len(networks),
        "blocked_words": len(words),
        "build_s": round(build_s, 3),
        "load_1m": os.getloadavg()[0],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
