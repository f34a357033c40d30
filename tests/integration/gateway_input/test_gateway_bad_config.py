"""`gateway serve -c bad.toml` (issue 6, "Running it"): configuration errors are reported all at once, each
with the file, the key and the reason, and the process exits non-zero without starting anything.

Each case puts several problems in one file; every one of them must be on stderr, so an operator fixes the
file in one pass instead of one problem per restart."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from tests.integration.gateway_input.helpers import ROOT

# (key as the gateway names it, a word of the reason)
Problem = tuple[str, str]


async def serve(config: Path) -> tuple[int, str]:
    """Run `python -m gateway.cli serve -c config`; its exit code and stderr."""
    with trio.fail_after(30):
        done = await trio.run_process(
            [sys.executable, "-m", "gateway.cli", "serve", "-c", str(config)],
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return done.returncode, done.stderr.decode()


def assert_reported(stderr: str, config: Path, problems: list[Problem]) -> None:
    """Each problem on a line of its own that names the config file, the key and the reason."""
    lines = stderr.splitlines()
    for key, reason in problems:
        matching = [line for line in lines if str(config) in line and key in line and reason in line]
        assert matching, f"no line names {config.name}, {key!r} and {reason!r}:\n{stderr}"


async def test_every_type_and_key_problem_is_reported_at_once(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        """
[server]
sockt_path = "var/gw.sock"
shutdown_grace_seconds = "soon"

[store]
sync = "yes"

[engine]
retry_max_attempts = 2.5

[[accounts]]
name = "shop"
secret_env = "SHOP_SECRET"

[[carriers]]
name = "sim"
[[carriers.binds]]
port = "2775"

[[routes]]
prefix = ""
carriers = ["sim"]
"""
    )
    code, stderr = await serve(config)
    assert code != 0
    assert_reported(
        stderr,
        config,
        [
            ("server.sockt_path", "unknown key"),
            ("server.shutdown_grace_seconds", "float"),
            ("store.path", "missing"),
            ("store.sync", "bool"),
            ("engine.retry_max_attempts", "int"),
            ("carriers[0].binds[0].port", "int"),
        ],
    )
    assert not (tmp_path / "var").exists(), "nothing may start with a bad config"


async def test_reference_problems_are_reported_together_with_type_problems(tmp_path: Path) -> None:
    """A route naming an unknown carrier, an account without a secret and a wrong type: all three at once."""
    config = tmp_path / "bad.toml"
    config.write_text(
        """
[store]
path = "store"
sync = "yes"

[[accounts]]
name = "shop"

[[carriers]]
name = "sim"
[[carriers.binds]]
port = 2775

[[routes]]
prefix = "4x"
carriers = ["nowhere"]
"""
    )
    code, stderr = await serve(config)
    assert code != 0
    assert_reported(
        stderr,
        config,
        [
            ("store.sync", "bool"),
            ("accounts[0]", "secret"),
            ("routes[0].carriers", "nowhere"),
            ("routes[0].prefix", "digits"),
        ],
    )


async def test_unreadable_secrets_are_reported_with_their_key_and_the_other_problems(tmp_path: Path) -> None:
    """Two accounts whose secret files do not exist and a route to an unknown carrier: each is reported, and
    a secret's problem names the key in the config that points at it."""
    config = tmp_path / "bad.toml"
    config.write_text(
        f"""
[store]
path = "store"

[[accounts]]
name = "shop"
secret_file = "{tmp_path / "missing-shop.secret"}"

[[accounts]]
name = "bank"
secret_file = "{tmp_path / "missing-bank.secret"}"

[[carriers]]
name = "sim"
[[carriers.binds]]
port = 2775

[[routes]]
prefix = ""
carriers = ["nowhere"]
"""
    )
    code, stderr = await serve(config)
    assert code != 0
    assert_reported(
        stderr,
        config,
        [
            ("accounts[0].secret_file", "missing-shop.secret"),
            ("accounts[1].secret_file", "missing-bank.secret"),
            ("routes[0].carriers", "nowhere"),
        ],
    )


async def test_values_outside_what_is_allowed_are_reported_with_what_is_allowed(tmp_path: Path) -> None:
    """Each of these was once accepted: port 99999 listened on 34463, an unknown log level logged at info."""
    config = tmp_path / "bad.toml"
    (tmp_path / "shop.secret").write_text("s\n")
    config.write_text(
        f"""
[server]
tcp_port = 99999
log_level = "verbose"
log_format = "xml"

[store]
path = "store"
retention_days = -1.0

[engine]
retry_max_attempts = -3
scheduler_poll_seconds = nan

[[accounts]]
name = "shop"
secret_file = "{tmp_path / "shop.secret"}"

[[simulators]]
name = "sim"
port = 0
"""
    )
    code, stderr = await serve(config)
    assert code == 2
    assert "Traceback" not in stderr
    assert_reported(
        stderr,
        config,
        [
            ("server.tcp_port", "must be between 1 and 65535, got 99999"),
            ("server.log_level", "'verbose' is not one of 'debug', 'info', 'warning', 'error', 'critical'"),
            ("server.log_format", "'xml' is not one of 'console', 'json'"),
            ("store.retention_days", "must be between 0.0 and 36500.0, got -1.0"),
            ("engine.retry_max_attempts", "must be between 0 and 1000, got -3"),
            ("engine.scheduler_poll_seconds", "must be a finite number, got nan"),
            ("simulators[0].port", "must be between 1 and 65535, got 0"),
        ],
    )
    assert not (tmp_path / "store").exists(), "nothing may start with a bad config"
