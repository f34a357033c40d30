"""The engine's parts each count what they did (`Engine.statistics()`, what the admin interface will show): after
a run, the counts agree with what the client sent and what the simulator saw, and nothing is left in between."""

from __future__ import annotations

from pathlib import Path

import trio

from gateway.upstream import MessageClass, SubmitRequest

from .harness import collect_final_events, running_gateway

ONE_PART = "Your code is 482913. It expires in 10 minutes."
TWO_PARTS = "您的验证码是 482913，十分钟内有效。请勿泄露给他人。" * 3  # noqa: RUF001 - UCS-2, 2 parts


async def test_each_part_of_the_engine_accounts_for_every_message(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_gateway(tmp_path) as h, h.client() as client:
            ids: list[str] = []
            for text, base in ((ONE_PART, 0), (TWO_PARTS, 100)):
                to = tuple(f"4477009{n:05d}" for n in range(base, base + 100))
                result = await client.submit(
                    SubmitRequest(to=to, text=text, message_class=MessageClass.NOTIFICATION, sender="ACME")
                )
                ids.extend(m.message_id for m in result.messages)
            refused = await client.submit(
                SubmitRequest(to=("447700900999", "12"), text=ONE_PART, message_class=MessageClass.NOTIFICATION,
                              sender="ACME")
            )
            assert [m.reason for m in refused.messages] == [None, "invalid_number"]
            ids.append(refused.messages[0].message_id)
            finals, _ = await collect_final_events(client, set(ids))
            assert {e.kind for e in finals.values()} == {"delivered"}
            # The last receipt is stored before its event is read: every count below is final.
            s = h.running.engine.statistics()

    assert (s.backend.submits, s.backend.recipients, s.backend.refused) == (3, 202, {"invalid_number": 1})
    assert (s.scheduler.handed, s.scheduler.pending) == (201, 0)
    assert s.scheduler.ready == {"sim": 0}
    # Each message is prepared once with its first part; the second parts are released by the correlator.
    assert (s.dispatch.dispatched, s.dispatch.parts_waiting) == (201, 0)
    assert (s.dispatch.carriers["sim"].preparing, s.dispatch.carriers["sim"].released_backlog) == (0, 0)
    parts = 101 + 2 * 100
    assert s.correlate.outcomes == parts == h.sim.counters.submits_ok
    assert (s.correlate.receipts, s.correlate.receipts_unparseable) == (parts, 0)
    assert (s.correlate.inbound_refused, s.correlate.cooling) == (0, ())
    assert (s.faults.internal_errors, s.faults.poisoned, s.faults.failing) == (0, 0, 0)


async def test_numbers_as_people_write_them_are_read_and_a_non_number_is_refused_alone(tmp_path: Path) -> None:
    written = ["+44 7700 900123", "(07700) 900-124", "＋４４７７００９００１２５", "call-me", "+44 (0)7700 900126"]  # noqa: RUF001
    with trio.fail_after(30):
        async with running_gateway(tmp_path) as h, h.client() as client:
            result = await client.submit(
                SubmitRequest(to=tuple(written), text=ONE_PART, message_class=MessageClass.NOTIFICATION, sender="ACME")
            )
            s = h.running.engine.statistics()
    assert [m.to for m in result.messages] == written
    assert [m.number for m in result.messages] == [
        "447700900123", "447700900124", "447700900125", None, "447700900126",
    ]  # fmt: skip
    assert [m.state for m in result.messages] == ["accepted"] * 3 + ["rejected", "accepted"]
    refused = result.messages[3]
    assert refused.reason == "invalid_number"
    assert refused.detail is not None
    assert refused.detail.startswith("not_a_number")
    assert s.backend.refused == {"invalid_number": 1}
