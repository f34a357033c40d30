"""The `gateway` console script: `gateway serve -c conf/gateway.toml` runs the gateway, `gateway check -c FILE`
checks a config as `serve` would load it (nothing opened, nothing bound), `gateway sim` runs the built-in carrier
SMSC simulator on its own."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.sim import cli as sim_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="SMPP 3.4 carrier gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("-c", "--config", default="conf/gateway.toml", help="config file (TOML)")
    serve.set_defaults(handler=_serve)
    check = commands.add_parser("check", help="check a config file (exit 0: ok; 2: its problems, one a line)")
    check.add_argument("-c", "--config", default="conf/gateway.toml", help="config file (TOML)")
    check.set_defaults(handler=_check)
    sim = commands.add_parser("sim", help="run the built-in carrier SMSC simulator")
    sim_cli.add_arguments(sim)
    sim.set_defaults(handler=sim_cli.run)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from gateway.app import serve_command  # the daemon's imports are not needed by `gateway sim`

    return serve_command(args.config)


def _check(args: argparse.Namespace) -> int:
    """Load the config as `serve` does (types and ranges, references, secrets and files, the route table and
    the policy), without opening the store or binding a socket."""
    from gateway.app import build_policy, build_routing, load_config
    from gateway.errors import ConfigError

    path = Path(args.config)
    try:
        cfg = load_config(path)
        build_routing(cfg)  # serve builds both again at start; load_config has built them once already
        build_policy(cfg)
    except ConfigError as err:
        for file, key, reason in err.problems:
            print(f"{file}: {key}: {reason}")
        return 2
    print(f"{path.resolve()}: ok")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
