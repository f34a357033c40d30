"""Crash safety for real: a child process writes and acknowledges continuously (fsync on, group commit)
and is killed with SIGKILL at random moments; after each kill every acknowledged message is there, every
acknowledged state change held, recovery resolved every "submitting" segment, and every index agrees."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.lifecycle import State
from gateway.store import Recovery, Store, StoreConfig

ROOT = Path(__file__).resolve().parents[3]
KILLS = 20
# States at least as far along as each acknowledged step (a later step may have committed unprinted).
AFTER_DISPATCH = {State.QUEUED, State.UNKNOWN, State.SUBMITTED, State.DELIVERED}
AFTER_RESPONSE = {State.SUBMITTED, State.DELIVERED}


def run_and_kill(path: str, seed: int, rng: random.Random) -> list[list[str]]:
    """Start the child, let it acknowledge a random number of operations, SIGKILL it, return its lines."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.store.crash_child", path, str(seed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    try:
        assert proc.stdout.readline().strip() == "ready"
        for _ in range(rng.randint(50, 3000)):  # the random moment: somewhere in a stream of commits
            lines.append(proc.stdout.readline())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    lines += rest.splitlines(keepends=True)
    # A line cut by the kill has no newline: its operation was committed but we cannot parse it.
    return [line.split() for line in lines if line.endswith("\n")]


def verify(store: Store, acked: dict[int, str]) -> None:
    assert store.count(b"inflight") == 0, "recovery left segments in submitting"
    for msg_id, step in acked.items():
        msg = store.get(msg_id)
        assert msg is not None, f"acknowledged message {msg_id} lost"
        seg = msg.segments[0]
        if step == "D":
            assert seg.state in AFTER_DISPATCH, (msg_id, seg)
            if seg.state is State.QUEUED:
                assert seg.possible_duplicate
                assert msg.message_class == "verification"
            if seg.state is State.UNKNOWN:
                assert msg.message_class == "marketing"
        elif step == "S":
            assert seg.state in AFTER_RESPONSE, (msg_id, seg)
            assert store.find_segment("carA", seg.carrier_id) == (msg_id, 0)
        elif step == "R":
            assert seg.state is State.DELIVERED, (msg_id, seg)
    assert store.check() == []


@pytest.mark.slow
def test_sigkill_never_loses_an_acknowledged_write(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    rng = random.Random(20261122)
    acked: dict[int, str] = {}
    cfg = StoreConfig(
        path=path,
        recovery={"verification": Recovery.AT_LEAST_ONCE, "marketing": Recovery.AT_MOST_ONCE},
    )
    for kill in range(KILLS):
        for fields in run_and_kill(path, kill, rng):
            tag, ids = fields[0], [int(f) for f in fields[1:] if f.isdigit()]
            if tag == "A":
                acked.update((i, "A") for i in ids if i not in acked)
            elif tag in ("D", "S", "R"):
                acked[ids[0]] = tag
        store = Store.open(cfg)  # recovery runs here, as after a real crash
        try:
            verify(store, acked)
        finally:
            store.close()
    assert len(acked) > KILLS * 20
    assert {"D", "S", "R"} <= set(acked.values())
