# ruff: noqa: RUF001 - the Chinese sample texts carry their own full-width punctuation
"""Content policy throughput: one scan of a text, then three carriers' verdicts, as the router does per submit.

Three word lists of 5,000 random words each (half ASCII words of 4-10 letters, half CJK words of 2-4
ideographs) are compiled into one automaton; a 70-character Chinese text and a 300-character GSM text are
scanned and each of three carriers (one list each, the last one all three) asks for its first hit.

Run: .venv/bin/python bench/content.py [--seconds 1.5]. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import time

from rates import rate  # bench/rates.py, beside this script

from gateway.routing.content import WordLists

CARRIERS = (("a",), ("b",), ("a", "b", "c"))
CJK_70 = (
    "【某某银行】尊敬的客户，您尾号8842的储蓄卡于12月03日15时06分转入人民币5000元，"
    "当前余额12345元。如有疑问请致电客服热线。"
)
CJK_70_BLOCKED = CJK_70[:40] + "低息贷★款" + CJK_70[45:]
GSM_300 = (
    "Your parcel 4711 from ACME is on its way & will arrive tomorrow between 9:00 and 12:00. "
    "Track it at acme.example/t/4711, reply STOP to opt out. Questions? Call +44 20 7946 0000, "
    "we answer Mon-Fri 8-20 and Sat 9-14; thank you for shopping with us and see you soon at ACME!!"
)[:300].ljust(300, ".")


def random_lists(seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)

    def word() -> str:
        if rng.random() < 0.5:
            return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 10)))
        return "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(2, 4)))

    lists = {name: [word() for _ in range(5_000)] for name in "abc"}
    lists["b"][0] = "贷款"
    return lists


def route(lists: WordLists, text: str) -> list[bool]:
    """What the router does per submit: scan once, then ask each candidate carrier."""
    scan = lists.scan(text)
    return [scan.first_hit(carrier) is None for carrier in CARRIERS]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args()
    raw = random_lists(4711)
    build_s = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        lists = WordLists(raw)
        build_s = min(build_s, time.perf_counter() - start)
    assert len(CJK_70) == 70, len(CJK_70)
    assert len(CJK_70_BLOCKED) == 70, len(CJK_70_BLOCKED)
    assert route(lists, CJK_70_BLOCKED) == [True, False, False]
    figures = {
        "scans_per_s_cjk70": rate(lambda: route(lists, CJK_70), args.seconds),
        "scans_per_s_gsm300": rate(lambda: route(lists, GSM_300), args.seconds),
        "scans_per_s_cjk70_blocked": rate(lambda: route(lists, CJK_70_BLOCKED), args.seconds),
    }
    for name, value in figures.items():
        print(f"{name:32s} {value:14,.1f}  ({1e6 / value:.1f} µs each)")
    print(f"{'build_s':32s} {build_s:14.3f}  ({len(lists):,} distinct words)")
    print(json.dumps({**{k: round(v, 1) for k, v in figures.items()}, "build_s": round(build_s, 3)}))


if __name__ == "__main__":
    main()
