"""Write operations the writer queues, and their results. Each is a value; `Store.apply` runs a list of
them in one write transaction (one group commit)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.fastinit import fast_init
from gateway.lifecycle import Ev, Event, State


@dataclass(frozen=True, slots=True)
class CapCheck:
    """A frequency cap the store counts at accept, in the same write transaction: at most `limit` messages
    counted under (`rule`, `scope`) per recipient in any `window_seconds` (a sliding window). `scope` is
    what the rule counts together ("*" every account; an account; an account and sender). `give_back`: a
    message that ends failed (never delivered) frees its slot."""

    rule: str
    scope: str
    window_seconds: int
    limit: int
    give_back: bool = True


@dataclass(frozen=True, slots=True)
class Recipient:
    """One recipient after the pure policy: `reject` (a reason code) or `defer_until_ms` (send window)."""

    number: str
    reject: str = ""
    defer_until_ms: int = 0
    route: tuple[str, ...] = ()  # the carriers to try, in order (Message.route)
    # Its own text (a template rendered with its values); "" sends the Submit's text.
    text: str = ""
    # The parts its text takes at the first carrier of its route: what an account with a balance reserves.
    parts: int = 1


@dataclass(frozen=True, slots=True)
class Submit:
    """One upstream submit: one text, many recipients. Opt-out, blacklist and the cap are checked in the
    write transaction so two concurrent submits cannot both pass them."""

    account: str
    message_class: str
    sender: str
    text: str
    recipients: tuple[Recipient, ...]
    receipt: bool = True
    client_ref: str = ""
    batch: str = ""
    schedule_ms: int = 0
    expires_ms: int = 0
    # Opt-outs block this message (the policy decides by class: marketing by default).
    check_optout: bool = True
    # Frequency caps that count it (policy/): every one must have room, or the recipient is refused.
    caps: tuple[CapCheck, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    message_id: int
    state: State
    reason: str = ""
    # For a person, with a refusal the store decided: which cap, which carrier's blacklist.
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SubmitResult:
    outcomes: tuple[Outcome, ...]
    # True when account + client_ref was seen before: the outcomes are the first submit's ids.
    duplicate: bool = False

    @property
    def message_ids(self) -> tuple[int, ...]:
        return tuple(o.message_id for o in self.outcomes)


@dataclass(frozen=True, slots=True)
class Prepare:
    """Before the first submit_sm: fix the carrier, split into `parts`, take a concatenation reference
    for the destination when `concat` (SMPP 3.4 5.3.2.22 sar_msg_ref_num / TS 23.040 9.2.3.24.1)."""

    message_id: int
    carrier: str
    parts: int
    concat: bool = False
    # Non-empty: also dispatch parts on this bind (queued -> submitting) in the same record write, what
    # Advance(DISPATCH) would do, at half the cost on the engine's hot path: the first `dispatch_parts`
    # (0: every part). The engine sends a long message's parts one after the other (see Engine._held).
    dispatch_bind: str = ""
    dispatch_parts: int = 0


@dataclass(frozen=True, slots=True)
class PrepareResult:
    message_id: int
    concat_ref: int


@dataclass(frozen=True, slots=True)
class Advance:
    """Apply a lifecycle event to one segment, or to every live segment when `segment` is None.
    SUBMIT_OK also indexes the carrier message id (event.carrier_id, normalised) and matches a
    receipt that arrived early."""

    message_id: int
    segment: int | None
    event: Event


@dataclass(frozen=True, slots=True)
class AdvanceResult:
    message_id: int
    state: State
    ignored: bool = False
    # An early receipt waiting for this submit_sm_resp was applied in the same transaction.
    early_receipt_applied: bool = False


@dataclass(frozen=True, slots=True)
class Reroute:
    """Take message `message_id` off `carrier` so the scheduler can route it to another carrier of its route.

    Only while no part of it can have reached that carrier: every segment waiting (accepted, deferred,
    queued). Then its segments become one waiting segment again (due now, attempts and the duplicate flag
    kept), its carrier is cleared and (carrier, reason) is added to its trail. Otherwise nothing changes
    (the result says ignored): a part the carrier took keeps every part on that carrier, as TS 23.040
    concatenation needs."""

    message_id: int
    carrier: str
    reason: str


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt: find the segment by (carrier, carrier id key), trying `carrier_id` and then each
    of `alternatives` (the other candidate keys of the receipt's id, gateway.smpp.msgid, best first).

    The first candidate whose segment waits for a receipt (submitted or unknown) is matched; with none
    waiting, the first candidate's segment, if it found one (a repeated receipt, ignored or an upgrade).
    Otherwise the receipt waits in the early table under every candidate until a submit_sm_resp with one
    of them claims it, or StoreConfig.early_receipt_seconds pass and it moves to the unmatched table with
    `raw_id` (the id as written; "" means carrier_id) and `text` (the start of the receipt's text)."""

    carrier: str
    carrier_id: str
    kind: Ev
    reason: str = ""
    alternatives: tuple[str, ...] = ()
    raw_id: str = ""
    text: bytes = b""


@dataclass(frozen=True, slots=True)
class ForgetEarly:
    """An early receipt (kept under `carrier_id` first, Receipt.carrier_id) this node handed to the node that
    sent its part (gateway.cluster): it waits here no longer. Nothing changes when none is kept."""

    carrier: str
    carrier_id: str


@dataclass(frozen=True, slots=True)
class ReceiptResult:
    matched: bool
    message_id: int = 0
    segment: int = 0
    state: State | None = None
    # No segment yet: kept in the early-receipt table until the submit_sm_resp lands.
    early: bool = False
    ignored: bool = False
    # The message's final state when this receipt ended it (its last part's receipt); None otherwise.
    ended: State | None = None


@dataclass(frozen=True, slots=True)
class Mo:
    """A mobile-originated message for `account` (the engine found the account by destination)."""

    account: str
    carrier: str
    source: str
    destination: str
    text: str
    # A long MO: its reference and part count. The parts kept for it (KeepMoPart) go in the same write.
    ref: int = 0
    parts: int = 1


@dataclass(frozen=True, slots=True)
class KeepMoPart:
    """One part of a long MO, kept until the message is whole (or expires incomplete) and a Mo op with the
    same source, destination, ref and part count removes it: the SMSC is told the part was received (and
    does not send it again) only once it is durable, and a restart loses no part."""

    carrier: str
    source: str
    destination: str
    ref: int
    total: int
    seq: int
    text: str
    data_coding: int


@dataclass(frozen=True, slots=True)
class SetOptOut:
    """A number opts out (or back in, `opted_out` False) of the messages opt-outs block. Kept with when,
    how (`source`: "mo:CARRIER", "api", "import") and what it said (`note`: the MO's text)."""

    number: str
    # "" applies to every account.
    scope: str = ""
    opted_out: bool = True
    source: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class SetBlacklist:
    """A number on (or off) a blacklist: `scope` "" for every message, "account:NAME" for one account's,
    "carrier:NAME" for one carrier (a number it reported as complained about: its messages take another
    carrier of their route, or are refused when none is left)."""

    number: str
    listed: bool = True
    scope: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class SetCursor:
    """An upstream subscriber acknowledged events up to `seq`: resume after it. Never moves back."""

    account: str
    seq: int


@dataclass(frozen=True, slots=True)
class Sweep:
    """Retention: purge up to `limit` final messages older than the retention age, and old events,
    frequency windows, idempotency keys and unmatched receipts; move early receipts older than
    early_receipt_seconds to the unmatched table (counted in `other`)."""

    limit: int


@dataclass(frozen=True, slots=True)
class Overdue:
    """End up to `limit` live messages whose deadline passed (ARCHITECTURE.md step 7, "every message ends"):
    waiting segments of a message whose validity passed end `expired`; submitted or unknown segments past
    their receipt deadline end `expired` with reason `no_receipt`. Whatever the carriers do. The result is
    a SweepResult: `messages` ended, `more` when the limit was reached."""

    limit: int


@dataclass(frozen=True, slots=True)
class SweepResult:
    messages: int
    events: int
    other: int
    more: bool


@dataclass(frozen=True, slots=True)
class PortedRows:
    """Number portability rows (E.164 digits, network name) for `generation` (>= 1): each number's row is
    put, or deleted when its network is "" (no longer ported). A full replace writes a new generation in
    many of these, then PortedSwitch makes it current; an update writes the current generation directly.
    One invalid row (a number that is not 1-15 ASCII digits, a network over 64 UTF-8 bytes) refuses the
    whole op with InvalidField, and none of its rows is written. A number twice: its last row wins."""

    generation: int
    rows: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class PortedSwitch:
    """Make `generation` the one lookups read (an import's, or a lower one still stored, to roll back);
    0: no portability table. Nothing else changes: the other generations stay until PortedPurge."""

    generation: int


@dataclass(frozen=True, slots=True)
class PortedPurge:
    """Delete up to `limit` rows of every generation but `keep`: an old table after a switch, and the rows
    of an import that never switched (abandoned, or cut by a crash). Never while an import is being
    written: it would delete that import's rows too."""

    keep: int
    limit: int


@dataclass(frozen=True, slots=True)
class PortedPurged:
    """What a PortedPurge deleted; `more` when rows of other generations remain."""

    rows: int
    more: bool


@dataclass(frozen=True, slots=True)
class TopUp:
    """Add `parts` (negative: take back) to `account`'s balance, creating it: from then on each submit
    reserves the parts it needs, a delivered part is charged, a failed, expired or refused one released.
    `unlimited`: remove the balance (the account is unlimited again; its statement stays)."""

    account: str
    parts: int = 0
    note: str = ""
    unlimited: bool = False


@dataclass(frozen=True, slots=True)
class BalanceResult:
    """An account's balance after the op: parts `available` to reserve, `reserved` by live messages,
    `charged` in all (delivered parts); `limited` False for an account without a balance."""

    account: str
    available: int = 0
    reserved: int = 0
    charged: int = 0
    limited: bool = False


@dataclass(frozen=True, slots=True)
class PutTemplate:
    """Create or replace template `template_id` of `account` (records.Template, packed by the engine after
    the pure checks of policy/templates.py). `expect_rev`: the revision the caller read (0: must not exist;
    -1: whatever is stored); another one refuses with WrongState, so two edits cannot overwrite each other.
    An empty `packed` deletes the template."""

    account: str
    template_id: str
    expect_rev: int
    packed: bytes


@dataclass(frozen=True, slots=True)
class PutBatch:
    """Create or change batch `batch_id` of `account` (records.BatchDef, packed by the engine):
    `expect_rev` as PutTemplate's. The store keeps the due index (when its next run starts) with it."""

    account: str
    batch_id: str
    expect_rev: int
    packed: bytes


@dataclass(frozen=True, slots=True)
class BatchRows:
    """Recipients of a draft batch from index `first` on (each row records.pack_batch_row: number and
    its template values). Rows are kept by index, so a chunk sent again after a lost connection
    overwrites itself: no recipient is added twice."""

    account: str
    batch_id: str
    first: int
    rows: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Done:
    """Result of an operation that returns nothing else (opt-out, blacklist)."""

    seq: int = 0


Op = (
    Submit | Prepare | Advance | Receipt | Mo | SetOptOut | SetBlacklist | SetCursor | Sweep | Reroute | Overdue
    | KeepMoPart | PortedRows | PortedSwitch | PortedPurge | TopUp | PutTemplate | PutBatch | BatchRows | ForgetEarly
)
Result = (
    SubmitResult | PrepareResult | AdvanceResult | ReceiptResult | SweepResult | Done | PortedPurged | BalanceResult
)


# The results built once per operation on the writer's hot path, and the operations the engine builds per
# message or segment (built again by the writer process as it decodes them).
for _cls in (Outcome, PrepareResult, AdvanceResult, ReceiptResult, Done, Recipient, Prepare, Advance, Receipt):
    fast_init(_cls)
