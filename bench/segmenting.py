"""Segmenting throughput: encode-and-split calls per second, against smpplib's make_parts.

Run: .venv/bin/python bench/segmenting.py [--seconds 1.0]. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random

import smpplib.gsm
from rates import rate  # bench/rates.py, beside this script

from gateway.segmenting import RouteEncoding, preview, segment

GSM_300 = (
    "Your parcel 4711 from ACME is on its way & will arrive tomorrow between 9:00 and 12:00. "
    "Track it at acme.example/t/4711, reply STOP to opt out. Questions? Call +44 20 7946 0000, "
    "we answer Mon-Fri 8-20 and Sat 9-14; thank you for shopping with us and see you soon at ACME!!"
)[:300].ljust(300, ".")
_rng = random.Random(4711)
CHINESE_300 = "".join(chr(_rng.randint(0x4E00, 0x9FFF)) for _ in range(300))
EMOJI_MIXED = ("Happy birthday 🎉🎂! Love from the family 👨‍👩‍👧‍👦 in 🇫🇷, see you 👋🏽 soon, café ") * 4


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args()
    route = RouteEncoding()
    assert len(segment(GSM_300, route, ref=1)) == 2
    assert len(segment(CHINESE_300, route, ref=1)) == 5
    figures = {
        "gsm7_300_per_s": rate(lambda: segment(GSM_300, route, ref=17), args.seconds),
        "ucs2_300_per_s": rate(lambda: segment(CHINESE_300, route, ref=17), args.seconds),
        "emoji_mixed_per_s": rate(lambda: segment(EMOJI_MIXED, route, ref=17), args.seconds),
        "preview_per_s": rate(lambda: preview(GSM_300, route), args.seconds),
        "smpplib_make_parts_gsm7_300_per_s": rate(lambda: smpplib.gsm.make_parts(GSM_300), args.seconds),
    }
    figures["gsm7_vs_smpplib"] = figures["gsm7_300_per_s"] / figures["smpplib_make_parts_gsm7_300_per_s"]
    for name, value in figures.items():
        print(f"{name:40s} {value:14,.1f}")
    print(json.dumps({k: round(v, 1) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
