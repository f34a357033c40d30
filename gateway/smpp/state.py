"""The SMPP 3.4 session state machine, as one table.

SMPP 3.4 section 2.3 defines the session states and section 2.4 (Table 2-1) which PDUs each side may issue in
each of them. Both sides of the wire use the same machine: an ESME (our binds to carriers) and an SMSC (the
built-in simulator) differ only in which column of the table they read.

States:
    OPEN       connected, not bound; only bind requests (ESME), bind responses, outbind, enquire_link
    BOUND_TX   ESME may submit; SMSC answers
    BOUND_RX   SMSC may deliver; ESME answers
    BOUND_TRX  both
    UNBINDING  one side sent unbind; responses to what was in flight still flow
    CLOSED     unbind handshake done, or the link is unusable

`ALLOWED[role, state]` gives the command_ids the role may SEND and may RECEIVE in that state. A received PDU
outside its set is answered with ESME_RINVBNDSTS (ESME_RALYBND for a second bind); sending one raises
`ProtocolError`. `TRANSITIONS[role, state, direction, command_id]` gives the next state; transitions on bind
and unbind responses happen only when command_status is ESME_ROK.
"""

from __future__ import annotations

from enum import Enum

from gateway.smpp.constants import CommandId as C


class Role(Enum):
    ESME = "esme"
    SMSC = "smsc"


class State(Enum):
    OPEN = "open"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"
    CLOSED = "closed"


SEND = "send"
RECV = "recv"

BINDS = frozenset({C.BIND_TRANSMITTER, C.BIND_RECEIVER, C.BIND_TRANSCEIVER})
BIND_RESPS = frozenset({C.BIND_TRANSMITTER_RESP, C.BIND_RECEIVER_RESP, C.BIND_TRANSCEIVER_RESP})
# Requests an ESME issues on a transmitter bind (Table 2-1: "BOUND_TX" in the ESME column).
TX_REQUESTS = frozenset({C.SUBMIT_SM, C.SUBMIT_MULTI, C.DATA_SM, C.QUERY_SM, C.CANCEL_SM, C.REPLACE_SM})
TX_RESPONSES = frozenset(
    {
        C.SUBMIT_SM_RESP,
        C.SUBMIT_MULTI_RESP,
        C.DATA_SM_RESP,
        C.QUERY_SM_RESP,
        C.CANCEL_SM_RESP,
        C.REPLACE_SM_RESP,
    }
)
# Requests an SMSC issues on a receiver bind.
RX_REQUESTS = frozenset({C.DELIVER_SM, C.DATA_SM, C.ALERT_NOTIFICATION})
RX_RESPONSES = frozenset({C.DELIVER_SM_RESP, C.DATA_SM_RESP})
# Either side, in every bound state.
LINK = frozenset({C.ENQUIRE_LINK, C.ENQUIRE_LINK_RESP, C.UNBIND, C.UNBIND_RESP, C.GENERIC_NACK})
# enquire_link is tolerated before the bind as SMPP 5.0 allows it; many SMSCs probe a fresh link that way.
OPEN_LINK = frozenset({C.ENQUIRE_LINK, C.ENQUIRE_LINK_RESP, C.GENERIC_NACK})

_E, _S = Role.ESME, Role.SMSC

_ESME_TX_SEND = TX_REQUESTS | LINK
_ESME_TX_RECV = TX_RESPONSES | LINK
_ESME_RX_SEND = RX_RESPONSES | LINK
_ESME_RX_RECV = RX_REQUESTS | LINK

ALLOWED: dict[tuple[Role, State], tuple[frozenset[int], frozenset[int]]] = {
    # (may send, may receive)
    (_E, State.OPEN): (BINDS | OPEN_LINK, BIND_RESPS | OPEN_LINK | {C.OUTBIND}),
    (_E, State.BOUND_TX): (_ESME_TX_SEND, _ESME_TX_RECV),
    (_E, State.BOUND_RX): (_ESME_RX_SEND, _ESME_RX_RECV),
    (_E, State.BOUND_TRX): (_ESME_TX_SEND | _ESME_RX_SEND, _ESME_TX_RECV | _ESME_RX_RECV),
    # After unbind: answer what still arrives, take responses to what was in flight (2.3).
    (_E, State.UNBINDING): (
        RX_RESPONSES | LINK - {C.UNBIND, C.ENQUIRE_LINK},
        TX_RESPONSES | RX_REQUESTS | LINK,
    ),
    (_E, State.CLOSED): (frozenset(), frozenset()),
    (_S, State.OPEN): (BIND_RESPS | OPEN_LINK | {C.OUTBIND}, BINDS | OPEN_LINK),
    (_S, State.BOUND_TX): (_ESME_TX_RECV, _ESME_TX_SEND),
    (_S, State.BOUND_RX): (_ESME_RX_RECV, _ESME_RX_SEND),
    (_S, State.BOUND_TRX): (_ESME_TX_RECV | _ESME_RX_RECV, _ESME_TX_SEND | _ESME_RX_SEND),
    (_S, State.UNBINDING): (
        TX_RESPONSES | LINK - {C.UNBIND, C.ENQUIRE_LINK},
        RX_RESPONSES | TX_REQUESTS | LINK,
    ),
    (_S, State.CLOSED): (frozenset(), frozenset()),
}

_BOUND_BY: dict[int, State] = {
    C.BIND_TRANSMITTER: State.BOUND_TX,
    C.BIND_TRANSMITTER_RESP: State.BOUND_TX,
    C.BIND_RECEIVER: State.BOUND_RX,
    C.BIND_RECEIVER_RESP: State.BOUND_RX,
    C.BIND_TRANSCEIVER: State.BOUND_TRX,
    C.BIND_TRANSCEIVER_RESP: State.BOUND_TRX,
}
_BOUND = (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX)

TRANSITIONS: dict[tuple[Role, State, str, int], State] = {}
for _resp in BIND_RESPS:
    # The ESME is bound when a successful bind response arrives; the SMSC when it sends one.
    TRANSITIONS[_E, State.OPEN, RECV, _resp] = _BOUND_BY[_resp]
    TRANSITIONS[_S, State.OPEN, SEND, _resp] = _BOUND_BY[_resp]
for _role in Role:
    for _bound in _BOUND:
        TRANSITIONS[_role, _bound, SEND, C.UNBIND] = State.UNBINDING
        # The session answers a received unbind itself, then the link is done.
        TRANSITIONS[_role, _bound, RECV, C.UNBIND] = State.CLOSED
    TRANSITIONS[_role, State.UNBINDING, RECV, C.UNBIND_RESP] = State.CLOSED
    TRANSITIONS[_role, State.UNBINDING, RECV, C.UNBIND] = State.CLOSED  # both sides unbound at once

# Transitions that happen only on command_status == ESME_ROK.
ON_SUCCESS_ONLY = BIND_RESPS | {C.UNBIND_RESP}


def next_state(role: Role, state: State, direction: str, command_id: int, status: int) -> State:
    new = TRANSITIONS.get((role, state, direction, command_id))
    if new is None or (command_id in ON_SUCCESS_ONLY and status != 0):
        return state
    return new
