"""The `gateway` console script: `gateway serve -c conf/gateway.toml` runs the gateway, `gateway sim` the
built-in carrier SMSC simulator on its own."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from gateway.sim import cli as sim_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="SMPP 3.4 carrier gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("-c", "--config", default="conf/gateway.toml", help="config file (TOML)")
    serve.set_defaults(handler=_serve)
    sim = commands.add_parser("sim", help="run the built-in carrier SMSC simulator")
    sim_cli.add_arguments(sim)
    sim.set_defaults(handler=sim_cli.run)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from gateway.app import serve_command  # the daemon's imports are not needed by `gateway sim`

    return serve_command(args.config)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
