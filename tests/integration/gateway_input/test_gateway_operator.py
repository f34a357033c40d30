"""Operator safety (issue 11): one gateway per store, a socket removed only by its owner, private state,
start-up problems reported as `file: key: reason` without a traceback, and SIGHUP that reloads instead of
killing.

The daemon runs as a subprocess where the exit code, stderr or a signal is what is tested; in this process
where only the gateway's own behaviour is."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.app import CannotStart, Gateway, _cannot_start, load_config
from gateway.sim.config import SimConfig
from tests.integration.gateway_input.helpers import (
    ACCOUNT,
    SECRET,
    SIM_PASSWORD,
    SIM_SYSTEM_ID,
    RawConnection,
    WatchedSimulator,
    daemon,
    running_gateway,
    serve_to_exit,
    write_config,
)


@contextmanager
def listening(path: Path | None = None) -> Iterator[socket.socket]:
    """A socket another process might hold: TCP on 127.0.0.1 (a free port), or Unix at `path`."""
    sock = socket.socket(socket.AF_UNIX) if path else socket.socket()
    with sock:
        sock.bind(str(path) if path else ("127.0.0.1", 0))
        sock.listen()
        yield sock


def new_simulator() -> WatchedSimulator:
    return WatchedSimulator(SimConfig(credentials=((SIM_SYSTEM_ID, SIM_PASSWORD),)))


def json_events(log: str, event: str) -> list[dict[str, Any]]:
    lines = (json.loads(line) for line in log.splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("event") == event]


# --- one gateway per store, and its socket --------------------------------------------------------------


async def test_second_gateway_on_the_same_store_is_refused_and_the_first_keeps_its_socket(tmp_path: Path) -> None:
    sim = new_simulator()
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            config = write_config(tmp_path, await nursery.start(sim.serve, "127.0.0.1", 0))
            socket_path = tmp_path / "gw.sock"
            async with daemon(config, tmp_path / "first.log") as first:
                await first.wait_until_serving(socket_path, ACCOUNT, SECRET)
                inode = socket_path.stat().st_ino

                code, stderr = await serve_to_exit(config)
                assert code == 1, stderr
                assert f"{tmp_path / 'store'}: in use by another gateway (pid {first.pid})" in stderr
                assert "Traceback" not in stderr

                assert socket_path.stat().st_ino == inode, "the second gateway touched the first one's socket"
                async with RawConnection.open(socket_path) as conn:
                    assert (await conn.hello())["type"] == "result"
                    await conn.assert_serving(2)
                first.send_signal(signal.SIGTERM)
                assert await first.wait() == 0, first.log()
            assert not socket_path.exists()
            nursery.cancel_scope.cancel()


async def test_the_store_is_free_again_once_a_gateway_stopped(tmp_path: Path) -> None:
    with trio.fail_after(60):
        for _ in range(2):
            async with running_gateway(tmp_path) as harness, RawConnection.open(harness.socket_path) as conn:
                await conn.hello()
                await conn.assert_serving(2)


async def test_socket_replaced_by_another_process_survives_this_gateways_exit(tmp_path: Path) -> None:
    """Whoever owns the path now (an operator's newer gateway, started after this one's socket was deleted)
    keeps it: a gateway removes the socket file it created, not whatever is at its path."""
    with trio.fail_after(60):
        async with running_gateway(tmp_path) as harness:
            harness.socket_path.unlink()
            other = socket.socket(socket.AF_UNIX)
            other.bind(str(harness.socket_path))
        with other:
            assert stat.S_ISSOCK(harness.socket_path.lstat().st_mode), "the gateway removed another's socket"


async def test_stale_socket_of_a_dead_gateway_is_replaced(tmp_path: Path) -> None:
    stale = tmp_path / "gw.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(stale))  # closed without unlinking, as a SIGKILLed gateway leaves it
    with trio.fail_after(60):
        async with running_gateway(tmp_path) as harness, RawConnection.open(harness.socket_path) as conn:
            await conn.hello()
            await conn.assert_serving(2)


async def test_a_socket_another_process_serves_on_is_refused_and_left_alone(tmp_path: Path) -> None:
    sim = new_simulator()
    with trio.fail_after(60), listening(tmp_path / "gw.sock"):
        async with trio.open_nursery() as nursery:
            config = load_config(write_config(tmp_path, await nursery.start(sim.serve, "127.0.0.1", 0)))
            with pytest.raises(CannotStart) as info:
                await nursery.start(Gateway(config, source="gw.toml").run)
            nursery.cancel_scope.cancel()
        assert info.value.problems == [
            f"gw.toml: server.socket_path: {tmp_path / 'gw.sock'} is in use (another process serves there)"
        ]
        assert (tmp_path / "gw.sock").exists()


# --- private state --------------------------------------------------------------------------------------


async def test_store_and_state_directory_are_private_even_when_made_readable_before(tmp_path: Path) -> None:
    """A store an older gateway made 0644 in a 0755 `var/` is made the gateway user's alone at start."""
    state = tmp_path / "var"
    (state / "store").mkdir(parents=True)
    (state / "store" / "leftover").write_text("message texts")
    for path, mode in ((state, 0o755), (state / "store", 0o755), (state / "store" / "leftover", 0o644)):
        path.chmod(mode)
    sim = new_simulator()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            config = write_config(tmp_path, await nursery.start(sim.serve, "127.0.0.1", 0))
            text = config.read_text()
            text = text.replace(f'"{tmp_path / "gw.sock"}"', f'"{state / "gw.sock"}"')
            config.write_text(text.replace(f'"{tmp_path / "store"}"', f'"{state / "store"}"'))
            gateway = Gateway(load_config(config))
            async with trio.open_nursery() as inner:
                await inner.start(gateway.run)
                modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in [state, *state.rglob("*")]}
                gateway.shutdown()
            nursery.cancel_scope.cancel()
    assert modes.pop("var") == 0o700
    assert modes.pop("store") == 0o700
    assert modes.pop("gw.sock") == 0o600
    assert {"data.mdb", "lock.mdb", "gateway.lock", "leftover"} <= set(modes)
    assert modes == dict.fromkeys(modes, 0o600)


# --- start-up problems ----------------------------------------------------------------------------------


async def test_ports_in_use_and_an_unusable_socket_directory_are_reported_without_a_traceback(
    tmp_path: Path,
) -> None:
    (tmp_path / "afile").write_text("not a directory")
    with listening() as tcp, listening() as sim:
        tcp_port, sim_port = tcp.getsockname()[1], sim.getsockname()[1]
        config = write_config(tmp_path, sim_port)
        text = config.read_text().replace(f'"{tmp_path / "gw.sock"}"', f'"{tmp_path / "afile" / "gw.sock"}"')
        text = text.replace("[server]\n", f"[server]\ntcp_port = {tcp_port}\n")
        config.write_text(text + f'\n[[simulators]]\nname = "sim"\nport = {sim_port}\n')
        code, stderr = await serve_to_exit(config)
    assert code == 1, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    for expected in (
        f"{config}: server.socket_path: {tmp_path / 'afile'} is not a directory",
        f"{config}: server.tcp_port: 127.0.0.1:{tcp_port} is in use (another process listens there)",
        f"{config}: simulators[0].port: 127.0.0.1:{sim_port} is in use (another process listens there)",
    ):
        assert any(line.strip() == expected for line in lines), f"{expected!r} not in:\n{stderr}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
async def test_a_socket_directory_without_write_permission_is_reported(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    config = write_config(tmp_path, 2)
    config.write_text(config.read_text().replace(f'"{tmp_path / "gw.sock"}"', f'"{locked / "gw.sock"}"'))
    code, stderr = await serve_to_exit(config)
    assert code == 1, stderr
    assert f"{config}: server.socket_path: {locked} is not writable" in stderr


async def test_a_port_taken_between_the_check_and_the_listen_is_reported_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check at start tries each port, but another process may take one a moment later: the listen's own
    error becomes the same `file: key: reason` line, through the nurseries' exception groups."""
    monkeypatch.setattr("gateway.app._cannot_listen", lambda host, port: None)
    sim = new_simulator()
    with trio.fail_after(60), listening() as taken:
        port = taken.getsockname()[1]
        async with trio.open_nursery() as nursery:
            config = write_config(tmp_path, await nursery.start(sim.serve, "127.0.0.1", 0))
            config.write_text(config.read_text() + f'\n[[simulators]]\nname = "s"\nport = {port}\n')
            with pytest.raises(ExceptionGroup) as info:
                await nursery.start(Gateway(load_config(config), source="gw.toml").run)
            nursery.cancel_scope.cancel()
    refused = _cannot_start(info.value)
    assert refused is not None, info.value
    reason = f"127.0.0.1:{port} is in use (another process listens there)"
    assert refused.problems == [f"gw.toml: simulators[0].port: {reason}"]
    assert not (tmp_path / "gw.sock").exists()


# --- SIGHUP ---------------------------------------------------------------------------------------------


async def test_sighup_reloads_refuses_a_broken_config_and_keeps_serving(tmp_path: Path) -> None:
    sim = new_simulator()
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            config = write_config(tmp_path, await nursery.start(sim.serve, "127.0.0.1", 0))
            shipped = config.read_text().replace('log_level = "warning"', 'log_level = "info"\nlog_format = "json"')
            config.write_text(shipped)
            socket_path = tmp_path / "gw.sock"
            async with daemon(config, tmp_path / "gateway.log") as gw:
                await gw.wait_until_serving(socket_path, ACCOUNT, SECRET)

                # A valid change: the log level and a bind's window apply now (the carrier is paused while its
                # binds are replaced); only the store, the sockets and the simulators wait for a restart.
                config.write_text(shipped.replace('log_level = "info"', 'log_level = "debug"').replace(
                    "window = 10", "window = 20"))  # fmt: skip
                gw.send_signal(signal.SIGHUP)
                (reloaded,) = json_events(await gw.wait_for_log("config_reloaded"), "config_reloaded")
                assert reloaded["applied"] == ["carriers[0].binds[0].window", "server.log_level"]
                assert reloaded["restart_needed"] == []
                await gw.wait_for_log("carrier_rebound")

                # The routing applies at once: the carrier now blocks a word list, so a text with one of its
                # words is refused (its route has no other carrier), and says which word.
                routed = shipped.replace('log_level = "info"', 'log_level = "debug"').replace(
                    "window = 10", "window = 20").replace(
                    'name = "sim"\n', 'name = "sim"\nblocked_words = ["banned"]\n') + (
                    '\n[[word_lists]]\nname = "banned"\nwords = ["jackpot"]\n')  # fmt: skip
                config.write_text(routed)
                gw.send_signal(signal.SIGHUP)
                reloaded = json_events(await gw.wait_for_log("config_reloaded", 2), "config_reloaded")[-1]
                assert reloaded["applied"] == ["carriers[0].blocked_words", "word_lists[0]"]
                async with RawConnection.open(socket_path) as conn:
                    assert (await conn.hello())["type"] == "result"
                    await conn.send({
                        "op": "submit", "id": 2, "to": ["447700900001", "447700900002"],
                        "text": "Win the J-A-C-K-P-O-T", "class": "marketing", "sender": "SHOP",
                    })  # fmt: skip
                    refused = (await conn.answer(2))["result"]["messages"]
                    assert [(m["state"], m["reason"]) for m in refused] == [("rejected", "content_blocked")] * 2
                    assert "'jackpot'" in refused[0]["detail"]

                # A broken one: every problem logged, the running config kept.
                config.write_text(routed.replace('log_level = "debug"', 'log_level = "verbose"\ntcp_port = 99999'))
                gw.send_signal(signal.SIGHUP)
                (refused,) = json_events(await gw.wait_for_log("config_reload_refused"), "config_reload_refused")
                assert f"{config}: server.log_level: 'verbose' is not one of" in "\n".join(refused["problems"])
                assert f"{config}: server.tcp_port: must be between 1 and 65535" in "\n".join(refused["problems"])

                async with RawConnection.open(socket_path) as conn:
                    assert (await conn.hello())["type"] == "result"
                    await conn.assert_serving(2)
                await sim.wait_for_submits(1)
                gw.assert_running()

                gw.send_signal(signal.SIGTERM)
                assert await gw.wait() == 0, gw.log()[-4000:]
            assert not socket_path.exists()
            assert "Traceback" not in gw.log()
            nursery.cancel_scope.cancel()
