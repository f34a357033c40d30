"""Child process for the crash test: writes continuously through the real Writer with fsync on, and prints
one line per acknowledged operation *after* its commit returned:

    A <id> [<id> ...]     a submit was acknowledged (these ids must survive)
    D <id>                prepared and dispatched: segment 0 is "submitting"
    S <id> <carrier id>   submit_sm_resp recorded
    R <id>                delivery receipt recorded (DELIVERED)

The parent kills it with SIGKILL at a random moment and checks the store against these lines.
Run as: python -m tests.integration.store.crash_child <store dir> <seed>
"""

from __future__ import annotations

import random
import sys

import trio

from gateway.lifecycle import Ev, Event
from gateway.store import Advance, Prepare, Receipt, Recipient, Store, StoreConfig, Submit, Writer

CLASSES = ("verification", "marketing")


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def worker(writer: Writer, rng: random.Random, tag: str) -> None:
    n = 0
    while True:
        n += 1
        recipients = tuple(Recipient(f"+4477{rng.randrange(10**8):08d}") for _ in range(rng.randint(1, 3)))
        op = Submit("acme", rng.choice(CLASSES), "ACME", "crash test", recipients, batch="crash",
                    client_ref=f"{tag}-{n}")  # fmt: skip
        result = await writer.do(op)
        say("A " + " ".join(str(i) for i in result.message_ids))
        msg_id = result.message_ids[0]
        await writer.apply([Prepare(msg_id, "carA", 1), Advance(msg_id, 0, Event(Ev.DISPATCH, bind="b1"))])
        say(f"D {msg_id}")
        if rng.random() < 0.5:
            continue
        await writer.do(Advance(msg_id, 0, Event(Ev.SUBMIT_OK, carrier_id=f"c{msg_id:x}")))
        say(f"S {msg_id} c{msg_id:x}")
        if rng.random() < 0.5:
            await writer.do(Receipt("carA", f"c{msg_id:x}", Ev.RECEIPT_DELIVERED))
            say(f"R {msg_id}")


async def main(path: str, seed: int) -> None:
    store = Store.open(StoreConfig(path=path, sync=True, group_wait_seconds=0.001))
    writer = Writer(store)
    say("ready")
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for k in range(12):
            nursery.start_soon(worker, writer, random.Random(seed * 100 + k), f"{seed}-{k}")


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
