"""`gateway sim`: run the simulator from options or a TOML file (options override the file)."""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from pathlib import Path
from typing import Any

import trio

from gateway import gctune
from gateway.errors import ConfigError
from gateway.sim.config import SimConfig, from_mapping, load_toml
from gateway.sim.server import Simulator

# option dest -> SimConfig field, for the options that map one to one.
_OPTION_FIELDS = {
    "id_format": "id_format",
    "id_start": "id_start",
    "receipt_delay": "receipt_delay_seconds",
    "receipt_mix": "receipt_mix",
    "receipt_styles": "receipt_styles",
    "destination_errors": "destination_errors",
    "receipt_before_response_rate": "receipt_before_response_rate",
    "response_delay": "response_delay_seconds",
    "throttle_tps": "throttle_tps",
    "error_rate": "error_rate",
    "error_status": "error_status",
    "drop_every": "drop_every_pdus",
    "mo_interval": "mo_interval_seconds",
    "window": "window",
    "seed": "seed",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML file ([sim] table or top-level keys)")
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default 2775; 0 picks a free one)")
    parser.add_argument(
        "--account", action="append", metavar="SYSTEM_ID:PASSWORD", help="accepted credentials (repeatable)"
    )
    parser.add_argument("--id-format", choices=["hex", "decimal"])
    parser.add_argument("--id-start", type=int)
    parser.add_argument("--receipt-delay", type=float, metavar="SECONDS")
    parser.add_argument("--receipt-mix", metavar="STAT[/ERR]:WEIGHT,...", help="e.g. DELIVRD:0.9,UNDELIV/1:0.1")
    parser.add_argument(
        "--receipt-styles",
        metavar="STYLE:WEIGHT,...",
        help="tlv, padded, decimal, compact, failed (e.g. tlv:3,compact:1)",
    )
    parser.add_argument(
        "--destination-errors", metavar="PREFIX:STATUS,...", help="answer these prefixes with an error (4479:0x08)"
    )
    parser.add_argument("--receipt-before-response-rate", type=float, metavar="SHARE")
    parser.add_argument("--response-delay", type=float, metavar="SECONDS", help="hold each submit_sm_resp")
    parser.add_argument("--throttle-tps", type=float)
    parser.add_argument("--error-rate", type=float, metavar="SHARE")
    parser.add_argument("--error-status", type=lambda v: int(v, 0), help="command_status to inject (0x08)")
    parser.add_argument("--drop-every", type=int, metavar="PDUS", help="drop a connection every N PDUs")
    parser.add_argument("--mo-interval", type=float, metavar="SECONDS", help="send a periodic MO")
    parser.add_argument("--window", type=int, help="deliver_sm outstanding per connection")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--tls-cert", type=Path, help="serve TLS with this PEM certificate")
    parser.add_argument("--tls-key", type=Path, help="private key for --tls-cert (PEM)")
    parser.add_argument("--stats-interval", type=float, default=0.0, metavar="SECONDS", help="print counters")
    parser.add_argument("--stats-json", type=Path, help="write counters as JSON here (periodically and at exit)")


def build_config(args: argparse.Namespace) -> tuple[SimConfig, str, int]:
    """SimConfig, host and port from the parsed options (and the TOML file they name)."""
    config = SimConfig()
    host, port = "127.0.0.1", 2775
    if args.config is not None:
        config = load_toml(args.config)
        table = _toml_table(args.config)
        host = str(table.get("host", host))
        port = int(table.get("port", port))
    values: dict[str, Any] = {
        field: getattr(args, opt) for opt, field in _OPTION_FIELDS.items() if getattr(args, opt) is not None
    }
    if args.account:
        values["credentials"] = args.account
    config = from_mapping(values, "<options>", config)
    return config, args.host or host, args.port if args.port is not None else port


def _toml_table(path: Path) -> dict[str, Any]:
    import tomllib

    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    table = data.get("sim", data)
    return table if isinstance(table, dict) else {}


def run(args: argparse.Namespace) -> int:
    try:
        config, host, port = build_config(args)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    sim = Simulator(config)
    gctune.tune()
    ssl_context = None
    if args.tls_cert is not None:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
    try:
        trio.run(_serve, sim, host, port, ssl_context, args.stats_interval, args.stats_json)
    except KeyboardInterrupt:
        pass
    finally:
        _report(sim, args.stats_json, final=True)
    return 0


async def _serve(
    sim: Simulator,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    interval: float,
    json_path: Path | None,
) -> None:
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(sim.serve, host, port, ssl_context)
        print(f"simulator listening on {host}:{bound}", flush=True)
        if interval > 0:
            while True:
                await trio.sleep(interval)
                _report(sim, json_path, final=False)


def _report(sim: Simulator, json_path: Path | None, *, final: bool) -> None:
    stats = sim.stats()
    if json_path is not None:
        tmp = json_path.with_suffix(json_path.suffix + ".tmp")
        tmp.write_text(json.dumps(stats, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(json_path)
    if final:
        print(sim.counters.render(), flush=True)
    elif json_path is None:
        print(json.dumps(stats, sort_keys=True), flush=True)
