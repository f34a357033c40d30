"""The compliance policy of the day [pure]: what the engine asks at accept and when an MO comes in.

Every rule is data (gateway.app builds this from the config, and a reload swaps a new one in whole):

- a text, once per request (`Policy.text`): banned words refuse it (`content_banned`, the word); the
  account's signature rules (`signature_missing`, `signature_invalid`); a class that must offer an opt-out
  (marketing by default) gets the account's wording appended, or is refused `optout_missing` when the
  account appends none. The text that goes out is the one returned: parts and preview count the wording.
- a recipient (`Policy.defer_until`): a class with a send window (marketing by default) waits for it in the
  recipient's time zones (or the account's fixed zone); the message is held, never dropped.
- what the store checks in the accept transaction (`Policy.check_optout`, `Policy.caps`): whether opt-outs
  block the class, and which frequency caps count the message. The store counts atomically (store/store.py).
- an MO (`Policy.keyword`): the account's opt-out and opt-in keywords (keywords.py).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.policy.content import SignatureRules, check_signature, has_optout_wording, with_optout
from gateway.policy.keywords import KeywordMatch, Keywords
from gateway.policy.windows import Window, next_open_ms
from gateway.routing.content import Scan
from gateway.store.ops import CapCheck

CAP_SCOPES = ("all", "account", "sender")


@dataclass(frozen=True, slots=True)
class CapRule:
    """At most `limit` messages of `classes` per recipient in any `window_seconds`, counted across every
    account ("all"), per account, or per account and sender. `offers_optout` narrows the rule to texts that
    do (True) or do not (False) carry an opt-out wording. `give_back`: a message that ends failed frees its
    slot."""

    name: str
    scope: str
    classes: frozenset[str]
    window_seconds: int
    limit: int
    offers_optout: bool | None = None
    give_back: bool = True


@dataclass(frozen=True, slots=True)
class AccountRules:
    signature: SignatureRules = field(default_factory=SignatureRules)
    # Appended to a text of a class that must offer an opt-out and carries no wording ("" refuses it).
    append_optout: str = ""
    # A fixed IANA time zone for its recipients' send windows ("" reads each number's own zones).
    time_zone: str = ""
    keywords: Keywords = field(default_factory=Keywords)
    # Classes it sends only from an approved template (AccountSettings.template_classes).
    template_classes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TextVerdict:
    """The text to send (with a wording appended, perhaps), or a refusal of every recipient of it."""

    text: str
    reject: str = ""
    detail: str = ""
    offers_optout: bool = False


class Policy:
    def __init__(
        self,
        *,
        optout_blocks: Collection[str] = ("marketing",),
        window: Window | None = None,
        window_classes: Collection[str] = ("marketing",),
        banned_lists: Collection[str] = (),
        banned_classes: Collection[str] = ("marketing",),
        wordings: Sequence[str] = (),
        wording_classes: Collection[str] = ("marketing",),
        caps: Sequence[CapRule] = (),
        accounts: Mapping[str, AccountRules] | None = None,
        optout_scope: str = "account",
    ) -> None:
        self.optout_blocks = frozenset(optout_blocks)
        # An MO opt-out holds for the account the MO reached ("account") or for every account ("all").
        self.optout_scope = optout_scope
        self.window = window
        self.window_classes = frozenset(window_classes)
        self.banned_lists = frozenset(banned_lists)
        self.banned_classes = frozenset(banned_classes)
        self.wordings = tuple(wordings)
        self.wording_classes = frozenset(wording_classes) if wordings else frozenset()
        self.cap_rules = tuple(caps)
        self.accounts = dict(accounts or {})
        self._default = AccountRules()
        # Per (class, offers_optout): the rules that count such a message (few rules, few keys).
        self._caps_for: dict[tuple[str, bool], tuple[CapRule, ...]] = {}

    def rules(self, account: str) -> AccountRules:
        return self.accounts.get(account, self._default)

    def requires_template(self, account: str, message_class: str) -> bool:
        """Whether `account` sends `message_class` only from an approved template."""
        return message_class in self.rules(account).template_classes

    # --- the text, once per request -------------------------------------------------------------------

    def text(self, account: str, message_class: str, text: str, scan: Scan | None) -> TextVerdict:
        """What the policy makes of a request's text (module docstring); `scan` is the route table's scan of
        it (routing/content.py), which holds the banned lists' words too."""
        if self.banned_lists and scan is not None and message_class in self.banned_classes:
            hit = scan.first_hit(self.banned_lists)
            if hit is not None:
                return TextVerdict(text, "content_banned", f"banned word {hit.word!r} (list {hit.list_name})")
        rules = self.rules(account)
        violation = check_signature(text, rules.signature)
        if violation is not None:
            return TextVerdict(text, violation.reason, violation.detail)
        offers = bool(self.wordings) and has_optout_wording(text, self.wordings)
        if message_class in self.wording_classes and not offers:
            if not rules.append_optout:
                wanted = " / ".join(self.wordings)
                return TextVerdict(text, "optout_missing", f"a {message_class} text must offer an opt-out ({wanted})")
            return TextVerdict(with_optout(text, rules.append_optout), offers_optout=True)
        return TextVerdict(text, offers_optout=offers)

    # --- what the store checks ------------------------------------------------------------------------

    def check_optout(self, message_class: str) -> bool:
        return message_class in self.optout_blocks

    def caps(self, account: str, sender: str, message_class: str, offers_optout: bool) -> tuple[CapCheck, ...]:
        """The caps that count a message of this account, sender and class, as the store checks them."""
        key = (message_class, offers_optout)
        rules = self._caps_for.get(key)
        if rules is None:
            rules = self._caps_for[key] = tuple(
                r for r in self.cap_rules
                if message_class in r.classes and r.offers_optout in (None, offers_optout)
            )  # fmt: skip
        return tuple(
            CapCheck(r.name, _scope(r.scope, account, sender), r.window_seconds, r.limit, r.give_back) for r in rules
        )

    # --- a recipient ----------------------------------------------------------------------------------

    def defer_until(self, account: str, message_class: str, zones: Sequence[str], now_ms: int) -> int:
        """0 to send now, else when the class's send window opens for this recipient (epoch ms). A number
        whose zones are unknown, with no fixed zone for the account, is not held (documented)."""
        window = self.window
        if window is None or message_class not in self.window_classes:
            return 0
        fixed = self.rules(account).time_zone
        zones = (fixed,) if fixed else zones
        if not zones:
            return 0
        return next_open_ms(window, zones, now_ms)

    # --- an MO ----------------------------------------------------------------------------------------

    def keyword(self, account: str, text: str) -> KeywordMatch | None:
        return self.rules(account).keywords.match(text)


def _scope(scope: str, account: str, sender: str) -> str:
    """The counter a rule's scope counts in: every account together, the account, or its sender."""
    if scope == "all":
        return "*"
    if scope == "account":
        return account
    return f"{account}\x1f{sender}"
