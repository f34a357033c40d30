"""What the engine reads from configuration, as frozen dataclasses (built by gateway.config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.config import choices, limits, loaded
from gateway.policy.categories import check_table
from gateway.policy.content import DEFAULT_RESERVED, DEFAULT_SYMBOLS
from gateway.policy.keywords import DEFAULT_OPTIN, DEFAULT_OPTOUT
from gateway.segmenting import DefaultAlphabet, Encoding, NationalLanguage, RouteEncoding, SplitMethod
from gateway.smpp.msgid import ALL_FORMS, CarrierIdFormats, IdForm, IdFormat

_NOT_TEXT = "'binary' is no text encoding (8-bit data is not split as text): 'gsm7', 'ascii', 'latin1' or 'ucs2'"


@dataclass(frozen=True, slots=True)
class EncodingSettings:
    """How a carrier wants text: TOML-friendly mirror of `segmenting.RouteEncoding`."""

    encodings: tuple[Encoding, ...] = (Encoding.GSM7, Encoding.UCS2)
    default_alphabet: DefaultAlphabet = DefaultAlphabet.GSM
    packed: bool = False
    split: SplitMethod = SplitMethod.UDH8
    # SMPP 3.4 / 3GPP 23.040 concatenation counts parts in one octet.
    max_parts: int = field(default=10, metadata=limits(1, 255))
    national: tuple[NationalLanguage, ...] = ()
    transliterate: bool = False

    def mistakes(self) -> list[tuple[str, str]]:
        """The combinations `RouteEncoding` refuses, or that would do nothing as written, as (key, reason):
        gateway.config reports them with the rest, before anything starts."""
        found = []
        gsm7 = Encoding.GSM7 in self.encodings
        alphabet = self.default_alphabet.value
        if not self.encodings:
            found.append(("encodings", "at least one encoding is needed: with none, no text could be sent"))
        if Encoding.BINARY in self.encodings:
            found.append(("encodings", _NOT_TEXT))
        if gsm7 and self.default_alphabet is not DefaultAlphabet.GSM:
            # SMPP 3.4 5.2.19: GSM 7-bit text goes out as data_coding 0, the SMSC's default alphabet.
            reason = f"gsm7 is sent as data_coding 0, which this carrier reads as {alphabet}: use 'gsm' or drop gsm7"
            found.append(("default_alphabet", f"{alphabet!r} with 'gsm7' in encodings: {reason}"))
        if self.packed and self.default_alphabet is not DefaultAlphabet.GSM:
            found.append(("packed", f"packing applies to the GSM 7-bit alphabet only, not to {alphabet!r}"))
        if self.encodings and not gsm7 and self.default_alphabet is DefaultAlphabet.GSM:
            for name in ("packed", "national", "transliterate"):
                if getattr(self, name):
                    found.append((name, "applies to gsm7 text only, and encodings has no 'gsm7': it would do nothing"))
        if not found:
            try:  # a rule added to RouteEncoding and not yet here is still reported, not raised at start
                self.route_encoding()
            except ValueError as err:
                found.append(("encodings", str(err)))
        return found

    def route_encoding(self) -> RouteEncoding:
        return RouteEncoding(
            encodings=frozenset(self.encodings),
            default_alphabet=self.default_alphabet,
            packed=self.packed,
            split=self.split,
            max_parts=self.max_parts,
            national=frozenset(self.national),
            transliterate=self.transliterate,
        )


# SMPP 3.4 5.1.3 command_status values, by what they mean for the message (ARCHITECTURE.md step 5).
_RETRY_HERE = (
    0x00000014,  # ESME_RMSGQFUL: the SMSC's queue is full for now
    0x00000058,  # ESME_RTHROTTLED: the bind pauses itself first; one that still comes back waits
    0x00000064,  # ESME_RX_T_APPN: temporary application error
)
_NEXT_CARRIER = (
    0x00000008,  # ESME_RSYSERR: this SMSC has a problem; another carrier may not
    0x00000045,  # ESME_RSUBMITFAIL
    0x000000FF,  # ESME_RUNKNOWNERR
)
_PERMANENT = (
    0x00000001,  # ESME_RINVMSGLEN
    0x0000000A,  # ESME_RINVSRCADR
    0x0000000B,  # ESME_RINVDSTADR
    0x00000043,  # ESME_RINVESMCLASS
    0x00000065,  # ESME_RX_P_APPN: permanent application error
    0x00000066,  # ESME_RX_R_APPN: reject message
)


@dataclass(frozen=True, slots=True)
class ErrorClasses:
    """What a submit_sm_resp error from this carrier means: try again on the same carrier after a back-off
    (`retry`), move the message to the next carrier of its route (`next_carrier`), or fail it (`permanent`,
    and every status in no list). TOML takes the codes as integers (0x08 is valid TOML)."""

    retry: tuple[int, ...] = _RETRY_HERE
    next_carrier: tuple[int, ...] = _NEXT_CARRIER
    permanent: tuple[int, ...] = _PERMANENT

    def __post_init__(self) -> None:
        lists = {"retry": self.retry, "next_carrier": self.next_carrier, "permanent": self.permanent}
        for name, codes in lists.items():
            for code in codes:
                if not 0 < code <= 0xFFFFFFFF:
                    raise ValueError(f"{name}: {code} is not a command_status (1..0xFFFFFFFF)")
        seen: dict[int, str] = {}
        for name, codes in lists.items():
            for code in codes:
                if seen.setdefault(code, name) != name:
                    raise ValueError(f"{name}: 0x{code:08X} is also in {seen[code]}")


@dataclass(frozen=True, slots=True)
class ErrorBudgetSettings:
    """Skip a carrier for `cooldown_seconds` once more than `max_error_rate` of its last `window_seconds` of
    answers (at least `min_submits`) were failures: "next carrier" errors or no answer (routing/health.py)."""

    max_error_rate: float = field(default=0.5, metadata=limits(0.0, 1.0))
    window_seconds: float = field(default=60.0, metadata=limits(1.0, 86400.0))
    min_submits: int = field(default=20, metadata=limits(1, None))
    cooldown_seconds: float = field(default=120.0, metadata=limits(0.0, 86400.0))


@dataclass(frozen=True, slots=True)
class CarrierSettings:
    """Per-carrier engine settings: encoding and how its message ids are written on each side."""

    name: str
    encoding: EncodingSettings = field(default_factory=EncodingSettings)
    # submit_sm_resp ids vs receipt ids (many SMSCs answer in hex and report in decimal).
    response_ids: IdFormat = field(default_factory=IdFormat)
    receipt_ids: IdFormat = field(default_factory=IdFormat)
    # Ask for a delivery receipt (registered_delivery 1) when the upstream app wants one.
    receipts: bool = True
    errors: ErrorClasses = field(default_factory=ErrorClasses)
    # A submitted (or unknown) segment with no receipt after this long ends expired, reason no_receipt.
    receipt_timeout_seconds: float = field(default=72 * 3600.0, metadata=limits(1.0, 90 * 86400.0))
    # With no bound transmitter for this long, the carrier's queued messages go back to the scheduler,
    # which routes them to the next carrier of their route.
    handback_seconds: float = field(default=30.0, metadata=limits(0.0, 86400.0))
    # How this carrier's receipts may write the submit_sm_resp's id besides as given: "case", "zero-padded",
    # "hex", "decimal" (gateway.smpp.msgid.IdForm; default all). Each is tried, best first.
    receipt_id_forms: tuple[IdForm, ...] = ALL_FORMS
    error_budget: ErrorBudgetSettings = field(default_factory=ErrorBudgetSettings)
    # Its failure codes as a batch report shows them: stored reason ("undeliverable:001") or its code
    # ("001", "0x00000045") -> a category of policy/categories.py (absent_subscriber, carrier_blacklisted...).
    failure_reasons: dict[str, str] = field(default_factory=dict)

    def mistakes(self) -> list[tuple[str, str]]:
        problems = []
        for problem in check_table({"-": self.failure_reasons}):
            key, _, reason = problem.partition(": ")
            problems.append((f"failure_reasons{key.removeprefix('-')}", reason))
        return problems

    @property
    def id_formats(self) -> CarrierIdFormats:
        return CarrierIdFormats(response=self.response_ids, receipt=self.receipt_ids, forms=self.receipt_id_forms)


MESSAGE_CLASSES = ("marketing", "notification", "verification")


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """A carrier as a route names it: priority 1 is tried first; weight shares messages among equal
    priorities; cost is the carrier's price per part (least_cost routes)."""

    carrier: str
    priority: int = field(default=1, metadata=limits(1, 1000))
    weight: float = field(default=1.0, metadata=limits(0.001, 1_000_000.0))
    # Required by a least_cost route (a missing price is not a free carrier); unused by priority routes.
    cost: float | None = field(default=None, metadata=limits(0.0, None))


@dataclass(frozen=True, slots=True)
class RouteSettings:
    """One rule of the ordered route table (routing/router.py): the first whose conditions all hold takes
    the recipient. A condition left empty matches everything."""

    prefix: str = ""  # one E.164 prefix (the original form; "" every number); `prefixes` for several
    carriers: tuple[str, ...] = ()  # shorthand: these carriers at priorities 1, 2, ... in order
    name: str = ""  # for logs and refusals; default "routes[i]"
    prefixes: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()  # destination networks ([[networks]] names)
    countries: tuple[str, ...] = ()  # ISO 3166 regions of the number ("GB", "CN")
    classes: tuple[str, ...] = field(default=(), metadata=choices(*MESSAGE_CLASSES))
    accounts: tuple[str, ...] = ()
    senders: tuple[str, ...] = ()
    strategy: str = field(default="priority", metadata=choices("priority", "least_cost"))
    mobile_only: bool = False  # refuse numbers that are not mobile (invalid_number, not_mobile)
    connections: tuple[ConnectionSettings, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkSettings:
    """A destination network (operator) and the E.164 number blocks it owns."""

    name: str
    blocks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WordListSettings:
    """Words a carrier blocks (a carrier names lists in its `blocked_words`): inline, or a UTF-8 file with
    one word per line (blank lines and lines starting with # skipped)."""

    name: str
    words: tuple[str, ...] = ()
    file: str = ""
    # The file's words, read by the loader (gateway.app.load_config): a reload that finds the file changed
    # swaps the new words in, though no key of the TOML changed.
    file_words: tuple[str, ...] = field(default=(), metadata=loaded())


@dataclass(frozen=True, slots=True)
class EngineSettings:
    # National numbers (07911 123456, 13800138000) are read as this region's (ISO 3166, "GB", "CN"); an
    # account's own `region` comes first. "" refuses national numbers.
    default_region: str = ""
    # Older form of the same: the country calling code ("44"), used when default_region is "".
    default_country_code: str = ""
    # E.164 prefixes of reserved test ranges whose numbers are accepted though no real numbering plan has
    # them (Ofcom's drama range 447700900, which the shipped simulators use): for test setups only.
    test_prefixes: tuple[str, ...] = ()
    # Temporary carrier errors (SMPP 3.4 5.1.3: RSYSERR, RMSGQFUL after the bind's own retries, ...).
    retry_max_attempts: int = field(default=5, metadata=limits(0, 1000))
    retry_backoff_min_seconds: float = field(default=5.0, metadata=limits(0.0, 86400.0))
    retry_backoff_max_seconds: float = field(default=600.0, metadata=limits(0.0, 86400.0))
    # Messages per dispatch transaction and outcomes / inbound PDUs per correlation transaction.
    dispatch_batch: int = field(default=256, metadata=limits(1, None))
    # Dispatch transactions in flight per carrier: while one batch commits, the next is prepared.
    dispatch_concurrency: int = field(default=4, metadata=limits(1, 1000))
    correlate_batch: int = field(default=1024, metadata=limits(1, None))
    # Messages handed to one carrier's dispatcher and not yet dispatched (the scheduler's lookahead).
    ready_queue_size: int = field(default=2048, metadata=limits(1, None))
    # The scheduler rescans the due index at least this often (deferred and retried messages).
    scheduler_poll_seconds: float = field(default=1.0, metadata=limits(0.01, 3600.0))
    # Long MO messages whose parts do not all arrive in time are stored incomplete, never dropped.
    mo_reassembly_timeout_seconds: float = field(default=300.0, metadata=limits(0.0, 86400.0))

    def mistakes(self) -> list[tuple[str, str]]:
        """What the values mean together (gateway.config reports each as a problem)."""
        if self.retry_backoff_min_seconds > self.retry_backoff_max_seconds:
            return [("retry_backoff_min_seconds", f"must be at most retry_backoff_max_seconds "
                     f"({self.retry_backoff_max_seconds!r}), got {self.retry_backoff_min_seconds!r}")]  # fmt: skip
        return []


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """An upstream account (gateway.config builds it from an [[accounts]] table)."""

    name: str
    secret_env: str | None = None
    secret_file: str | None = None
    # MO sent to these addresses (short codes, long numbers) belongs to this account.
    mo_addresses: tuple[str, ...] = ()
    # Its national numbers are read as this region's (ISO 3166); "" takes engine.default_region.
    region: str = ""
    # Compliance ([compliance]): its texts must open or end with a signature 【Brand】, one of `signatures`
    # when given; None takes compliance.signature.required.
    signature_required: bool | None = None
    signatures: tuple[str, ...] = ()
    # Appended to a text that must offer an opt-out and has no wording ("" refuses such a text).
    append_optout: str = ""
    # An IANA zone for its recipients' send windows ("Asia/Shanghai"); "" reads each number's zones.
    time_zone: str = ""
    # Reply keywords of its own (its customers' languages), added to compliance.optout_keywords / optin.
    optout_keywords: tuple[str, ...] = ()
    optin_keywords: tuple[str, ...] = ()
    # Classes it sends only from an approved template (a batch of one): a submit or a text batch of one of
    # them is refused template_required, as platforms require of marketing.
    template_classes: tuple[str, ...] = field(default=(), metadata=choices("marketing", "notification", "verification"))


@dataclass(frozen=True, slots=True)
class SignatureSettings:
    """The signature rules (policy/content.py): "at most 9 CJK or 18 Latin characters" is 18 units, a CJK
    character counting 2; reserved (neutral) signatures no account may use; symbols no signature may hold."""

    required: bool = False
    max_units: int = field(default=18, metadata=limits(1, 200))
    min_units: int = field(default=2, metadata=limits(1, 200))
    reserved: tuple[str, ...] = tuple(sorted(DEFAULT_RESERVED))
    symbols: str = DEFAULT_SYMBOLS


@dataclass(frozen=True, slots=True)
class ComplianceSettings:
    """[compliance]: the rules platforms live by (gateway/policy/). Without the table, opt-outs block
    marketing and MO keywords opt numbers out and in; with it, these defaults add windows and wordings."""

    optout_keywords: tuple[str, ...] = DEFAULT_OPTOUT
    optin_keywords: tuple[str, ...] = DEFAULT_OPTIN
    # The classes an opt-out blocks; and whether an MO opt-out holds for the account it reached or all.
    optout_blocks: tuple[str, ...] = field(default=("marketing",), metadata=choices(*MESSAGE_CLASSES))
    optout_scope: str = field(default="account", metadata=choices("account", "all"))
    # "HH:MM-HH:MM" in the recipient's time zone ("" for none): the classes it holds wait for it.
    window: str = "09:00-21:00"
    window_classes: tuple[str, ...] = field(default=("marketing",), metadata=choices(*MESSAGE_CLASSES))
    # Names of [[word_lists]] whose words no text of `banned_word_classes` may carry (content_banned): the
    # advertising law's absolutes ("第一") are for advertising, and "您第一次登录" is no advert.
    banned_words: tuple[str, ...] = ()
    banned_word_classes: tuple[str, ...] = field(default=("marketing",), metadata=choices(*MESSAGE_CLASSES))
    # What counts as offering an opt-out, and the classes whose texts must (or get the account's wording).
    optout_wordings: tuple[str, ...] = ("回T退订", "回TD退订", "Reply STOP to opt out")
    optout_wording_classes: tuple[str, ...] = field(default=("marketing",), metadata=choices(*MESSAGE_CLASSES))
    signature: SignatureSettings = field(default_factory=SignatureSettings)


@dataclass(frozen=True, slots=True)
class CapSettings:
    """[[caps]]: at most `limit` texts of `classes` per number in any `window_seconds`, counted across all
    accounts, per account, or per account and sender; `offers_optout` "yes" / "no" counts only texts that do
    / do not carry an opt-out wording. A message that ends failed frees its slot unless `give_back` is off."""

    name: str
    limit: int = field(metadata=limits(1, 1_000_000))
    window_seconds: int = field(metadata=limits(1, 366 * 86400))
    scope: str = field(default="all", metadata=choices("all", "account", "sender"))
    classes: tuple[str, ...] = field(default=("marketing",), metadata=choices(*MESSAGE_CLASSES))
    offers_optout: str = field(default="any", metadata=choices("any", "yes", "no"))
    give_back: bool = True
