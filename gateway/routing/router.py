"""Which carriers a recipient's message goes to, in what order, and why the others were left out [pure].

Three tables decide it, all from configuration and reloaded together as one `Router`:

- **Networks** (`NetworkTable`): which operator owns a number, by the longest matching block of its E.164
  digits (`conf/examples/china-networks.toml` holds the three mainland China operators' mobile blocks); a
  ported number (number -> network, looked up by the caller) overrides its block.
- **Routes** (`RouteRule`), an ordered table: the first rule whose conditions all hold takes the message.
  A rule may name destination networks, E.164 prefixes, countries (ISO regions), message classes, accounts
  and senders; a condition left out matches everything, several values of one condition match any of them.
  It names its carriers (`Connection`s), each with a priority (1 is tried first), a weight and a cost per
  part.
- **Carriers** (`CarrierProfile`): each carrier's encodings (how many parts a text needs there, or that it
  cannot take it) and the word lists it blocks (`routing.content.WordLists`).

`Router.decide` returns a `Plan`: the carriers in the order to try (highest priority first, weighted random
among equal priorities; or least cost first, where the cost is the carrier's price per part times the parts
the text needs with that carrier's encodings), the parts each needs, and the carriers of the route left out
with the reason (`content_blocked`, `message_too_long`, `not_encodable`, `unknown_carrier`). When none is
left it returns a `Refusal` with the reason of the first carrier left out (or `no_route`) and a detail for a
person. Whether a carrier is bound right now is not decided here: the dispatcher takes the first carrier of
the plan with a bound transmitter, and the failover rules move along the plan.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from math import factorial

from gateway.fastinit import fast_init
from gateway.routing.content import Scan, WordLists
from gateway.routing.numbers import MOBILE_KINDS, Number, NumberBook
from gateway.segmenting import RouteEncoding, preview
from gateway.smpp.errors import SegmentingError

STRATEGIES = ("priority", "least_cost")
_FITS_ENTRIES = 4096
_ORDERS_KEPT = 6  # a _Draws keeps the Plan of each order drawn when there are at most this many (a group of 3)


@dataclass(frozen=True, slots=True)
class Connection:
    """A carrier as a route names it."""

    carrier: str
    priority: int = 1  # 1 is tried first, then 2, ...
    weight: float = 1.0  # share of the messages among connections of equal priority (or equal cost)
    cost: float = 0.0  # price per part (any currency: only compared within one route)


def sender_key(sender: str) -> str:
    """A numeric sender as its digits ("+447700900999" and "00447700900999" are "447700900999"); any other
    sender as written. National forms ("07700900999") stay as written: no region is known here."""
    if sender[:1] == "+":
        rest = sender[1:]
    elif sender[:2] == "00":
        rest = sender[2:]
    else:
        return sender
    return rest if rest.isascii() and rest.isdigit() else sender


@dataclass(frozen=True, slots=True)
class RouteRule:
    name: str
    connections: tuple[Connection, ...]
    networks: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    countries: frozenset[str] = frozenset()
    classes: frozenset[str] = frozenset()
    accounts: frozenset[str] = frozenset()
    senders: frozenset[str] = frozenset()
    strategy: str = "priority"
    mobile_only: bool = False  # refuse numbers that are not mobile (invalid_number, not_mobile)

    def __post_init__(self) -> None:
        # A numeric sender matches however it is written: "+447700900999", "00447700900999", "447700900999".
        object.__setattr__(self, "senders", frozenset(sender_key(s) for s in self.senders))

    def matches_number(self, number: Number, network: str) -> bool:
        if self.networks and network not in self.networks:
            return False
        if self.countries and number.region not in self.countries:
            return False
        return not self.prefixes or number.e164.startswith(self.prefixes)

    def matches_message(self, account: str, message_class: str, sender: str) -> bool:
        return (
            (not self.classes or message_class in self.classes)
            and (not self.accounts or account in self.accounts)
            and (not self.senders or sender in self.senders)
        )


@dataclass(frozen=True, slots=True)
class CarrierProfile:
    encoding: RouteEncoding
    word_lists: frozenset[str] = frozenset()  # names of WordLists lists this carrier blocks


@dataclass(frozen=True, slots=True)
class Plan:
    route: str
    carriers: tuple[str, ...]  # in the order to try
    parts: tuple[int, ...]  # parts of the text with each of them
    left_out: tuple[tuple[str, str], ...] = ()  # (carrier, reason) of the route's carriers not in `carriers`
    detail: str = ""  # why they were left out, for a person


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # a reason code (lifecycle.REASONS)
    detail: str  # for a person: which rule, which word, which carrier


# Built once per recipient (gateway/fastinit.py).
fast_init(Plan)
fast_init(Refusal)


class NetworkTable:
    """Which network (operator) owns a number: the longest block (E.164 prefix) that starts it."""

    def __init__(self, blocks: Mapping[str, Iterable[str]] | None = None) -> None:
        self._by_prefix: dict[str, str] = {}
        for network, prefixes in (blocks or {}).items():
            for prefix in prefixes:
                if not prefix.isascii() or not prefix.isdigit():
                    raise ValueError(f"network {network!r}: block {prefix!r} must be digits")
                owner = self._by_prefix.get(prefix)
                if owner is not None and owner != network:
                    raise ValueError(f"block {prefix!r} belongs to both {owner!r} and {network!r}")
                self._by_prefix[prefix] = network
        self._lengths = sorted({len(p) for p in self._by_prefix}, reverse=True)
        self.networks = frozenset(self._by_prefix.values())

    def __len__(self) -> int:
        return len(self._by_prefix)

    def network_of(self, e164: str) -> str:
        """The network whose longest block starts `e164`; "" when no block does."""
        table = self._by_prefix
        for n in self._lengths:
            found = table.get(e164[:n])
            if found is not None:
                return found
        return ""


class _RuleIndex:
    """The rules a recipient can match, found without testing every rule: each rule is filed under one of its
    conditions, the most selective it has (accounts, senders, networks, prefixes, countries, classes, in that
    order; a rule without conditions matches everyone), and a recipient's candidates are the rules filed
    under its own values, tested in table order. The first rule without conditions ends the search: it
    matches every recipient, so no rule after it is ever asked."""

    def __init__(self, rules: Sequence[RouteRule]) -> None:
        self.by_account: dict[str, list[int]] = {}
        self.by_sender: dict[str, list[int]] = {}
        self.by_network: dict[str, list[int]] = {}
        self.by_prefix: dict[str, list[int]] = {}
        self.by_country: dict[str, list[int]] = {}
        self.by_class: dict[str, list[int]] = {}
        self.everyone: list[int] = []
        for i, rule in enumerate(rules):
            for values, index in (
                (rule.accounts, self.by_account), (rule.senders, self.by_sender), (rule.networks, self.by_network),
                (rule.prefixes, self.by_prefix), (rule.countries, self.by_country), (rule.classes, self.by_class),
            ):  # fmt: skip
                if values:
                    for value in values:
                        index.setdefault(value, []).append(i)
                    break
            else:
                self.everyone.append(i)
        self.prefix_lengths = sorted({len(p) for p in self.by_prefix})
        # The first rule that matches everyone, and len(rules) when none does: candidates stop before it.
        self.fallback = self.everyone[0] if self.everyone else len(rules)
        # Each index without the rules at or past the fallback (never asked), empty lists dropped.
        limit = self.fallback
        for index in (self.by_account, self.by_sender, self.by_network, self.by_prefix, self.by_country,
                      self.by_class):  # fmt: skip
            kept = {value: [i for i in ids if i < limit] for value, ids in index.items()}
            index.clear()
            index.update((value, ids) for value, ids in kept.items() if ids)

    def first(
        self, rules: Sequence[RouteRule], number: Number, network: str, account: str, message_class: str,
        sender: str,
    ) -> int:  # fmt: skip
        """The index of the first rule whose conditions all hold, -1 when none does: the candidates filed
        under the recipient's values tested in table order, then the fallback."""
        found: list[int] = []
        if account and (ids := self.by_account.get(account)):
            found += ids
        if sender and (ids := self.by_sender.get(sender)):
            found += ids
        if network and (ids := self.by_network.get(network)):
            found += ids
        region = number.region
        if region and (ids := self.by_country.get(region)):
            found += ids
        if message_class and (ids := self.by_class.get(message_class)):
            found += ids
        if self.by_prefix:
            e164 = number.e164
            by_prefix = self.by_prefix
            for n in self.prefix_lengths:
                if n > len(e164):
                    break
                if ids := by_prefix.get(e164[:n]):
                    found += ids
        if found:
            found.sort()
            for i in found:
                rule = rules[i]
                if rule.matches_number(number, network) and rule.matches_message(account, message_class, sender):
                    return i
        return self.fallback if self.fallback < len(rules) else -1


class _Draws:
    """A rule's plan for one text when its order involves chance: everything but the order, which each
    recipient draws. The usable carriers come in groups, by priority (or by cost, then priority), in the
    order they are tried, each group in the rule's order. A group's order is drawn by weight (_weighted); the
    Plan of each order drawn is kept when there are few (a group of three has six), so a recipient costs the
    draws and a dict lookup."""

    __slots__ = ("carriers", "detail", "groups", "left_out", "parts", "plans", "route")

    def __init__(
        self, route: str, groups: list[list[tuple[str, int, float]]], left_out: tuple[tuple[str, str], ...],
        detail: str,
    ) -> None:  # fmt: skip
        self.route = route
        usable = [c for g in groups for c in g]
        self.carriers = tuple(c for c, _, _ in usable)
        self.parts = tuple(p for _, p, _ in usable)
        # (index of its first carrier, its weights) per group.
        self.groups: list[tuple[int, tuple[float, ...]]] = []
        start = 0
        for g in groups:
            self.groups.append((start, tuple(w for _, _, w in g)))
            start += len(g)
        self.left_out = left_out
        self.detail = detail
        orders = 1
        for g in groups:
            orders *= factorial(len(g))
        # The Plans of the orders drawn so far; None when there are too many orders to keep them all.
        self.plans: dict[tuple[int, ...], Plan] | None = {} if orders <= _ORDERS_KEPT else None

    def plan(self, rng: random.Random | Callable[[], float]) -> Plan:
        """Each group in weighted random order (see _weighted), highest priority (or least cost) first."""
        draw = rng.random if isinstance(rng, random.Random) else rng
        groups = self.groups
        if len(groups) == 1:  # the usual case: one priority
            order = _weighted(groups[0][1], draw)
        else:
            drawn: list[int] = []
            for start, weights in groups:
                if len(weights) == 1:
                    drawn.append(start)
                else:
                    drawn += [start + i for i in _weighted(weights, draw)]
            order = tuple(drawn)
        plans = self.plans
        if plans is not None and (found := plans.get(order)) is not None:
            return found
        carriers, parts = self.carriers, self.parts
        plan = Plan(self.route, tuple([carriers[i] for i in order]), tuple([parts[i] for i in order]),
                    self.left_out, self.detail)  # fmt: skip
        if plans is not None:
            plans[order] = plan
        return plan


class Router:
    """One snapshot of the routing configuration; a reload builds a new one and swaps it in whole."""

    def __init__(
        self,
        rules: Sequence[RouteRule],
        carriers: Mapping[str, CarrierProfile],
        *,
        networks: NetworkTable | None = None,
        words: WordLists | None = None,
    ) -> None:
        named = Counter(r.name for r in rules)
        for r in rules:
            if named[r.name] > 1:
                raise ValueError(f"route {r.name!r} appears twice")
            if r.strategy not in STRATEGIES:
                raise ValueError(f"route {r.name!r}: strategy {r.strategy!r} is none of {', '.join(STRATEGIES)}")
            for c in r.connections:
                if c.priority < 1 or c.weight <= 0 or c.cost < 0:
                    raise ValueError(f"route {r.name!r}: carrier {c.carrier!r} needs priority >= 1, weight > 0, "
                                     "cost >= 0")  # fmt: skip
        self.rules = tuple(rules)
        self.carriers = dict(carriers)
        self.networks = networks or NetworkTable()
        self.words = words
        self._index = _RuleIndex(self.rules)
        # Per rule, worked out once: whether its texts need a word scan (a carrier of it blocks words).
        self._scanned = tuple(
            words is not None and any(self.carriers[c.carrier].word_lists for c in r.connections
                                      if c.carrier in self.carriers)
            for r in self.rules
        )  # fmt: skip
        # Each carrier's first carrier with an equal encoding: what fit() keys its previews by.
        first: dict[RouteEncoding, str] = {}
        self._same_encoding = {name: first.setdefault(p.encoding, name) for name, p in self.carriers.items()}
        self._fits: dict[tuple[str, str], tuple[str, int, str]] = {}
        # Per (rule, text): what the rule's carriers make of the text (a scan, a fit per carrier), the same
        # for every recipient of one text: a Plan or Refusal when no chance is involved, else the _Draws
        # each recipient draws its order from. A bulk send's recipients after the first cost a dict lookup
        # and, for a rule with equal priorities, the draws.
        self._plans: dict[tuple[str, str], Plan | Refusal | _Draws] = {}

    def rule_for(
        self, number: Number, account: str, message_class: str, sender: str, network: str | None = None
    ) -> RouteRule | None:
        """The first rule, in table order, whose conditions all hold."""
        if network is None:
            network = self.networks.network_of(number.e164)
        i = self._index.first(self.rules, number, network, account, message_class, sender_key(sender))
        return self.rules[i] if i >= 0 else None

    def fit(self, text: str, carrier: str) -> tuple[str, int, str]:
        """(reason, parts, detail): reason "" when `carrier` can send `text` in `parts` parts, else
        message_too_long or not_encodable with the detail. Carriers with equal encodings share one preview
        of each text."""
        key = (text, self._same_encoding.get(carrier, carrier))
        found = self._fits.get(key)
        if found is None:
            if len(self._fits) >= _FITS_ENTRIES:
                self._fits.clear()
            encoding = self.carriers[key[1]].encoding
            try:
                shape = preview(text, encoding)
                # For a refusal, the part of the detail that names no carrier (see below).
                found = ("message_too_long", shape.parts, str(encoding.max_parts)) if shape.too_long else (
                    "", shape.parts, "")  # fmt: skip
            except SegmentingError as err:
                found = ("not_encodable", 0, str(err))
            self._fits[key] = found
        reason = found[0]
        if not reason:
            return found
        if reason == "message_too_long":
            return reason, found[1], f"{found[1]} parts with {carrier}, which takes at most {found[2]}"
        return reason, 0, f"{carrier}: {found[2]}"

    def decide(
        self,
        number: Number,
        *,
        account: str,
        message_class: str,
        sender: str,
        text: str,
        rng: random.Random | Callable[[], float],
        network: str | None = None,
        scan: Scan | None = None,
    ) -> Plan | Refusal:
        """The plan for one recipient. `network` overrides the block table (a ported number); `scan` is the
        text's word scan when the caller decides many recipients of one text (scan once, see scan_text)."""
        if network is None:
            network = self.networks.network_of(number.e164)
        i = self._index.first(self.rules, number, network, account, message_class, sender_key(sender))
        if i < 0:
            where = f" (network {network})" if network else ""
            return Refusal("no_route", f"no route takes +{number.e164}{where} for {message_class} from "
                                       f"{account}")  # fmt: skip
        rule = self.rules[i]
        if rule.mobile_only and number.kind not in MOBILE_KINDS and number.kind != "unknown":
            return Refusal("invalid_number", f"not_mobile: route {rule.name} takes mobile numbers, "
                                             f"+{number.e164} is {number.kind}")  # fmt: skip
        key = (rule.name, text)
        found = self._plans.get(key)  # the same text through the same rule: a bulk send's recipients
        if found is None:
            if scan is None and self._scanned[i]:
                scan = self.words.scan(text)  # type: ignore[union-attr]  # _scanned: words is not None
            found = self._plan(rule, text, scan)
            if len(self._plans) >= _FITS_ENTRIES:
                self._plans.clear()
            self._plans[key] = found
        if type(found) is _Draws:
            return found.plan(rng)
        return found  # type: ignore[return-value]  # a Plan or a Refusal

    def _plan(self, rule: RouteRule, text: str, scan: Scan | None) -> Plan | Refusal | _Draws:
        """The rule's carriers for `text`: those that can take it, grouped in the rule's order; a _Draws when
        a group holds more than one (each recipient draws their order), else the Plan."""
        usable: list[tuple[Connection, int]] = []
        left_out: list[tuple[str, str]] = []
        details: list[str] = []
        for c in rule.connections:
            profile = self.carriers.get(c.carrier)
            if profile is None:
                left_out.append((c.carrier, "unknown_carrier"))
                details.append(f"{c.carrier}: not configured")
                continue
            if scan is not None and profile.word_lists:
                hit = scan.first_hit(profile.word_lists)
                if hit is not None:
                    left_out.append((c.carrier, "content_blocked"))
                    details.append(f"{c.carrier} blocks {hit.word!r} (list {hit.list_name})")
                    continue
            reason, parts, detail = self.fit(text, c.carrier)
            if reason:
                left_out.append((c.carrier, reason))
                details.append(detail)
                continue
            usable.append((c, parts))
        if not usable:
            reason = left_out[0][1] if left_out else "no_route"
            if reason == "unknown_carrier":
                reason = "no_route"
            return Refusal(reason, f"route {rule.name}: " + ("; ".join(details) or "names no carrier"))
        # Priority groups (or cost groups), in order.
        least_cost = rule.strategy == "least_cost"
        groups: dict[tuple[float, ...], list[tuple[str, int, float]]] = {}
        for c, parts in usable:
            key = (c.cost * parts, c.priority) if least_cost else (c.priority,)
            groups.setdefault(key, []).append((c.carrier, parts, c.weight))
        ordered = [groups[k] for k in sorted(groups)]
        if len(ordered) < len(usable):  # a group of two or more: each recipient draws
            return _Draws(rule.name, ordered, tuple(left_out), "; ".join(details))
        return Plan(
            rule.name, tuple(g[0][0] for g in ordered), tuple(g[0][1] for g in ordered), tuple(left_out),
            "; ".join(details),
        )  # fmt: skip

    def scan_text(self, text: str) -> Scan | None:
        return self.words.scan(text) if self.words is not None else None


def _weighted(weights: Sequence[float], draw: Callable[[], float]) -> tuple[int, ...]:
    """The indexes of `weights` in a random order where each comes first with a chance proportional to its
    weight (draws without replacement: the second place among the rest the same way): a draw in [0, 1)
    times the weights left, minus each weight in turn, picks the one where it goes below 0 (the last one if
    rounding leaves it at 0 or above). Two and three weights are written out, the same arithmetic."""
    n = len(weights)
    if n == 2:
        return (0, 1) if draw() * sum(weights) - weights[0] < 0 else (1, 0)
    if n == 3:
        point = draw() * sum(weights) - weights[0]
        if point < 0:
            first, a, b = 0, 1, 2
        elif point - weights[1] < 0:
            first, a, b = 1, 0, 2
        else:
            first, a, b = 2, 0, 1
        pair = (weights[a], weights[b])
        return (first, a, b) if draw() * sum(pair) - pair[0] < 0 else (first, b, a)
    rest = list(range(n))
    left = list(weights)
    out = []
    while len(left) > 1:
        point = draw() * sum(left)
        pick = len(left) - 1  # if no break: a draw of exactly 1.0, or rounding
        for i, w in enumerate(left):
            point -= w
            if point < 0:
                pick = i
                break
        out.append(rest.pop(pick))
        del left[pick]
    out.append(rest[0])
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Routing:
    """What the engine decides routes with; a reload builds a new one and swaps it in whole."""

    router: Router
    numbers: NumberBook
    regions: Mapping[str, str]  # account -> region its national numbers are read in
    default_region: str = ""

    def region_of(self, account: str) -> str:
        return self.regions.get(account, self.default_region)

    @property
    def country_code(self) -> str:
        """The default region's calling code ("44"), for the lenient reading of numbers carriers send."""
        return self.numbers.country_code_of(self.default_region)


__all__ = [
    "STRATEGIES", "CarrierProfile", "Connection", "NetworkTable", "Plan", "Refusal", "RouteRule", "Router", "Routing",
]  # fmt: skip
