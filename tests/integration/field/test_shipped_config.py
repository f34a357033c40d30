"""Field trial: the shipped `conf/gateway.toml`, run the way `bin/gateway` runs it, for more than a minute.

The fast tests prove the parts; only this one proves the whole stays up (STYLE.md, "Do this" 12). The shipped
config once died ten seconds after every start (its store writer child was killed with the thread that
started it) and no test noticed, because every other test either runs the gateway in-process or with the
writer in a thread, or for a few seconds.

What is changed from the shipped file, and nothing else: its ports (free ones, never 2775-2778, which an
operator's gateway may hold) and where its relative paths lead (a copy of conf/ in a temp directory, so
`var/` is created there). Notably `[store] writer_process = true` and `sync = true` stay as shipped.
"""

from __future__ import annotations

import re
import shutil
import signal
import stat
import threading
from collections import Counter
from pathlib import Path

import pytest
import smpplib.client
import smpplib.gsm
import trio

from gateway.upstream import BlockingClient, EventKind, MessageClass, SubmitRequest
from tests.integration.gateway_input.helpers import ROOT, daemon, free_port

pytestmark = pytest.mark.slow

SHIPPED = ROOT / "conf" / "gateway.toml"
IDLE_SECONDS = 62  # past the 10 s and 60 s marks at which a child or timer killed by a thread would show
CLIENTS = 4
MESSAGES_PER_CLIENT = 250
# Recipients on both routes of the shipped config: 44... to uk-mobile (sim-uk), anything else to intl-hub.
RECIPIENTS = ("+447700900{:03d}", "+3361234{:04d}", "07700900{:03d}")


def shipped_copy(tmp: Path) -> tuple[Path, dict[int, int]]:
    """conf/gateway.toml and the secrets it names, copied to tmp/conf with free ports; the port map."""
    conf = tmp / "conf"
    conf.mkdir()
    for name in ("demo.secret", "demo.smpp.secret", "sim.secret"):
        shutil.copy(ROOT / "conf" / name, conf / name)
    ports = {shipped: free_port() for shipped in (2775, 2776, 2777, 2778)}
    text, replaced = re.subn(
        r"^(\s*(?:tcp_)?port\s*=\s*)(2775|2776|2777|2778)\b", lambda m: m[1] + str(ports[int(m[2])]),
        SHIPPED.read_text(), flags=re.MULTILINE,
    )  # fmt: skip
    assert replaced == 6, "the shipped config changed shape: two simulators, two binds, one TCP port, one SMPP"
    config = conf / "gateway.toml"
    config.write_text(text)
    return config, ports


def tcp_ping(port: int, secret: str) -> None:
    with BlockingClient.connect_tcp("127.0.0.1", port, account="demo", secret=secret) as app:
        app.ping()


def send_and_collect(socket_path: Path, secret: str, client: int, finals: Counter[str], lock: threading.Lock) -> None:
    """One application: submits its share as fast as the gateway answers, then reads final events for them."""
    ids: set[str] = set()
    with BlockingClient.connect_unix(socket_path, account="demo", secret=secret) as app:
        for n in range(MESSAGES_PER_CLIENT):
            to = RECIPIENTS[n % len(RECIPIENTS)].format(client * MESSAGES_PER_CLIENT + n)
            long = n % 10 == 0  # some multi-part texts, as bulk sends have
            text = f"field trial {client}/{n} " + ("x" * 200 if long else "")
            result = app.submit(SubmitRequest((to,), text, MessageClass.NOTIFICATION, "ACME"))
            (message,) = result.messages
            assert message.state == "accepted", message
            ids.add(message.message_id)
    with BlockingClient.connect_unix(socket_path, account="demo", secret=secret) as app:
        app.subscribe(after=0, kinds=[EventKind.DELIVERED, EventKind.FAILED])
        for i, event in enumerate(app.events(timeout=30.0)):
            if i % 100 == 99:
                app.ack(event.seq)  # reopens the window (1000 unacknowledged events at most)
            if event.message_id in ids:
                ids.discard(event.message_id)
                with lock:
                    finals[event.kind] += 1
            if not ids:
                return
    raise AssertionError(f"client {client}: {len(ids)} messages without a final event after 30 s of silence")


def smpp_application(port: int, password: str, n: int) -> tuple[list[str], list[str]]:
    """An application that speaks SMPP (smpplib, an independent implementation): binds as the shipped
    system_id, submits n texts (every fifth a two-part one, UDH as smpplib splits it), reads every receipt."""
    client = smpplib.client.Client("127.0.0.1", port, timeout=30, allow_unknown_opt_params=True)
    ids: list[str] = []
    receipts: list[str] = []
    client.set_message_sent_handler(lambda pdu: ids.append(pdu.message_id.decode()))
    client.set_message_received_handler(lambda pdu: receipts.append(pdu.receipted_message_id.decode()))
    client.connect()
    try:
        client.bind_transceiver(system_id="demo", password=password)
        parts_sent = 0
        for n_msg in range(n):
            text = f"smpp field trial {n_msg} " + ("y" * 180 if n_msg % 5 == 0 else "")
            parts, coding, esm_class = smpplib.gsm.make_parts(text)
            for part in parts:
                client.send_message(source_addr_ton=5, source_addr="ACME", dest_addr_ton=1,
                                    destination_addr=RECIPIENTS[n_msg % 2].format(n_msg).lstrip("+"),
                                    short_message=part, data_coding=coding, esm_class=esm_class,
                                    registered_delivery=True)  # fmt: skip
                parts_sent += 1
        while len(ids) < parts_sent or len(receipts) < n:
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
    return ids, receipts


async def test_shipped_config_stays_up_delivers_reloads_and_stops_cleanly(tmp_path: Path) -> None:
    config, ports = shipped_copy(tmp_path)
    var = tmp_path / "var"
    socket_path = var / "gateway.sock"
    secret = (ROOT / "conf" / "demo.secret").read_text().strip()
    with trio.fail_after(IDLE_SECONDS + 150):
        async with daemon(config, tmp_path / "gateway.log") as gw:
            with trio.fail_after(30):
                await gw.wait_until_serving(socket_path, "demo", secret)
            assert "store_writer_started" in gw.log(), "the shipped config runs its store writer as a child"
            await trio.to_thread.run_sync(tcp_ping, ports[2776], secret)  # the loopback listener serves too

            # 1. Idle, as a freshly started gateway is: nothing may die on a timer.
            for _ in range(IDLE_SECONDS):
                await trio.sleep(1)
                gw.assert_running()
            with trio.fail_after(10):
                await gw.wait_until_serving(socket_path, "demo", secret)

            # 2. Load: several applications at once; every message reaches a final state, most delivered.
            finals: Counter[str] = Counter()
            lock = threading.Lock()
            with trio.fail_after(120):
                async with trio.open_nursery() as apps:
                    for client in range(CLIENTS):
                        apps.start_soon(trio.to_thread.run_sync, send_and_collect, socket_path, secret, client,
                                        finals, lock)  # fmt: skip
            total = CLIENTS * MESSAGES_PER_CLIENT
            assert sum(finals.values()) == total, finals
            # sim-uk reports 90% delivered, sim-intl all: well over 80% in all.
            assert finals[EventKind.DELIVERED] > 0.8 * total, finals
            gw.assert_running()

            # 2b. An application that speaks SMPP, on the shipped [smpp_server]: every receipt comes back as
            # deliver_sm, for the id its submit_sm_resp gave (the parts of a long text share one).
            password = (ROOT / "conf" / "demo.smpp.secret").read_text().strip()
            with trio.fail_after(60):
                ids, receipts = await trio.to_thread.run_sync(smpp_application, ports[2778], password, 40)
            assert sorted(set(ids)) == sorted(receipts), (len(set(ids)), len(receipts))
            gw.assert_running()

            # 3. SIGHUP with the config unchanged: reloaded, nothing to restart, still serving.
            gw.send_signal(signal.SIGHUP)
            with trio.fail_after(10):
                text = await gw.wait_for_log("config_reloaded")
                await gw.wait_until_serving(socket_path, "demo", secret)
            assert "config_reload_refused" not in text
            await trio.sleep(1)
            gw.assert_running()

            # 4. What it keeps on disk is the gateway user's alone.
            assert stat.S_IMODE(var.stat().st_mode) == 0o700
            assert stat.S_IMODE((var / "store").stat().st_mode) == 0o700
            for f in (var / "store").iterdir():
                assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
            assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600

            # 5. SIGTERM: the graceful sequence, exit 0, the socket removed, the writer child gone.
            writer = re.search(r"store_writer_started\s.*?pid=(\d+)", gw.log())
            gw.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                code = await gw.wait()
            log = gw.log()
            assert code == 0, log[-4000:]
            assert "shutdown_complete" in log
            assert "Traceback" not in log, log[-4000:]
            assert not socket_path.exists()
            if writer:
                assert not await trio.Path(f"/proc/{writer[1]}").exists(), "the store writer outlived the gateway"
