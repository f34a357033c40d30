"""Defects of a field trial: config input that crashed start-up, or was refused or accepted whatever its value.
Each is now a `file: key: reason` problem, reported with every other one (gateway.config, gateway.app)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.app import load_config, serve_command
from gateway.config import build
from gateway.errors import ConfigError
from gateway.sim.config import ReceiptStyle, from_mapping
from gateway.store.config import Recovery


def write_config(tmp_path: Path, extra: str = "", *, bind: str = "", top: str = "") -> Path:
    """A valid config (one account, one carrier with one bind, one route) with `extra` tables appended,
    `bind` lines in the bind's table and `top` lines in `[engine]`."""
    (tmp_path / "app.secret").write_text("s\n")
    (tmp_path / "bind.secret").write_text("s\n")
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[server]
socket_path = "{tmp_path / "gw.sock"}"

[store]
path = "{tmp_path / "store"}"

[engine]
{top}

[[accounts]]
name = "app"
secret_file = "app.secret"

[[carriers]]
name = "c"
[[carriers.binds]]
port = 28710
password_file = "bind.secret"
{bind}

[[routes]]
carriers = ["c"]
{extra}
"""
    )
    return path


def problems(path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert all(file == str(path) for file, _, _ in info.value.problems)
    return {key: reason for _, key, reason in info.value.problems}


# --- 1. encoding combinations and opt-out wordings ------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "key", "words"),
    [
        ('default_alphabet = "latin1"', "default_alphabet", "'latin1' with 'gsm7' in encodings"),
        ('default_alphabet = "ascii"', "default_alphabet", "data_coding 0"),
        ('encodings = ["latin1"]\ndefault_alphabet = "latin1"\npacked = true', "packed", "GSM 7-bit alphabet only"),
        ('encodings = ["gsm7", "binary"]', "encodings", "'binary' is no text encoding"),
        ("encodings = []", "encodings", "at least one encoding"),
        ('encodings = ["ucs2"]\npacked = true', "packed", "no 'gsm7'"),
        ('encodings = ["ucs2"]\nnational = [1]', "national", "no 'gsm7'"),
    ],
)
def test_an_impossible_encoding_is_a_problem_of_its_key(tmp_path: Path, encoding: str, key: str, words: str) -> None:
    found = problems(write_config(tmp_path, f"[carriers.encoding]\n{encoding}"))
    assert words in found.pop(f"carriers[0].encoding.{key}")
    assert not found


def test_encoding_problems_are_reported_with_the_rest(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[carriers.encoding]\ndefault_alphabet = "latin1"', top="colour = 1")
    assert set(problems(path)) == {"carriers[0].encoding.default_alphabet", "engine.colour"}


def test_a_bad_encoding_makes_serve_exit_2_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, '[carriers.encoding]\nencodings = ["binary"]')
    assert serve_command(str(path)) == 2
    err = capsys.readouterr().err
    assert f"{path}: carriers[0].encoding.encodings: 'binary' is no text encoding" in err
    assert "Traceback" not in err
    assert not (tmp_path / "store").exists()


def test_a_latin1_carrier_without_gsm7_loads(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[carriers.encoding]\nencodings = ["latin1", "ucs2"]\ndefault_alphabet = "latin1"')
    assert load_config(path).carriers[0].encoding.route_encoding().default_alphabet.value == "latin1"


def test_an_optout_wording_with_no_letter_is_a_problem(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[compliance]\noptout_wordings = ["Reply STOP to opt out", "!!!"]')
    found = problems(path)
    assert "no letter or digit" in found.pop("compliance.optout_wordings[1]")
    assert not found


def test_an_optout_wording_with_no_letter_is_a_problem_beside_an_append_optout(tmp_path: Path) -> None:
    """build_policy checked each account's append_optout against the wordings, and that raised."""
    path = write_config(tmp_path, '[compliance]\noptout_wordings = ["---"]')
    path.write_text(path.read_text().replace('name = "app"', 'name = "app"\nappend_optout = "Reply STOP"'))
    assert set(problems(path)) == {"compliance.optout_wordings[0]"}


def test_an_append_optout_that_is_no_wording_is_still_reported(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[compliance]\noptout_wordings = ["Reply STOP to opt out", "..."]')
    path.write_text(path.read_text().replace('name = "app"', 'name = "app"\nappend_optout = "!!"'))
    found = problems(path)
    assert set(found) == {"compliance.optout_wordings[1]", "accounts[0].append_optout"}
    assert "none of the wordings (Reply STOP to opt out)" in found["accounts[0].append_optout"]


# --- 2. tuples of fixed length --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pairs:
    errors: tuple[tuple[str, int], ...] = ()
    one: tuple[str, float] | None = None


def test_a_pair_is_read_item_by_item_with_each_items_type() -> None:
    got = build(Pairs, {"errors": [["4479", 8], ["44", 11]], "one": ["a", 2]}, file="p.toml")
    assert got == Pairs((("4479", 8), ("44", 11)), ("a", 2.0))


def test_a_tuple_of_pairs_may_be_a_table() -> None:
    assert build(Pairs, {"errors": {"4479": 8}}, file="p.toml").errors == (("4479", 8),)


def test_a_pair_of_the_wrong_length_or_types_is_a_problem() -> None:
    with pytest.raises(ConfigError) as info:
        build(Pairs, {"errors": [["4479"], [8, "x"]], "one": ["a", 1, 2]}, file="p.toml")
    found = {key: reason for _, key, reason in info.value.problems}
    assert found == {
        "errors[0]": "expected a list of 2 items [str, int], got 1",
        "errors[1][0]": "expected str, got int 8",
        "errors[1][1]": "expected int, got str 'x'",
        "one": "expected a list of 2 items [str, float], got 3",
    }


def test_simulator_receipt_styles_and_destination_errors_load(tmp_path: Path) -> None:
    sim = """
[[simulators]]
name = "sim"
port = 28711
[simulators.settings]
receipt_styles = [["tlv", 1.0], ["compact", 2]]
destination_errors = [["44", 11], ["4479", 0x08]]
"""
    settings = load_config(write_config(tmp_path, sim)).simulators[0].settings
    assert settings.receipt_styles == ((ReceiptStyle.TLV, 1.0), (ReceiptStyle.COMPACT, 2.0))
    assert settings.destination_errors == (("4479", 8), ("44", 11))  # the longest prefix first, as the sim reads
    tables = sim.replace('[["tlv", 1.0], ["compact", 2]]', "{ decimal = 1 }").replace(
        '[["44", 11], ["4479", 0x08]]', '{ "4470" = 11 }'
    )
    settings = load_config(write_config(tmp_path, tables)).simulators[0].settings
    assert settings.receipt_styles == ((ReceiptStyle.DECIMAL, 1.0),)
    assert settings.destination_errors == (("4470", 11),)


def test_simulator_settings_out_of_range_are_problems(tmp_path: Path) -> None:
    sim = """
[[simulators]]
name = "sim"
port = 28712
[simulators.settings]
receipt_styles = [["tlv", 0]]
destination_errors = { "4479" = 0 }
window = 0
error_rate = 1.5
receipt_mix = [{ stat = "delivered" }]
"""
    found = problems(write_config(tmp_path, sim))
    key = "simulators[0].settings"
    assert set(found) == {f"{key}.{k}" for k in ("window", "error_rate", "receipt_mix[0].stat")}
    found = problems(write_config(tmp_path, sim.split("window")[0]))
    assert "weight above 0" in found[f"{key}.receipt_styles"]
    assert "not an error command_status" in found[f"{key}.destination_errors"]
    with pytest.raises(ConfigError):  # `gateway sim`'s own options: the same checks
        from_mapping({"receipt_styles": [["tlv", 0]]})


# --- 3. [server.upstream] -------------------------------------------------------------------------------

UPSTREAM_KEYS = [
    "max_frame_bytes", "max_inflight", "default_event_window", "max_event_window", "event_batch",
    "hello_timeout_seconds", "max_auth_failures", "close_timeout_seconds", "write_timeout_seconds",
    "read_size_bytes",
]  # fmt: skip


@pytest.mark.parametrize("value", ["0", "-1"])
def test_upstream_limits_refuse_zero_and_negative_values(tmp_path: Path, value: str) -> None:
    lines = "\n".join(f"{k} = {value}" for k in UPSTREAM_KEYS)
    found = problems(write_config(tmp_path, f"[server.upstream]\n{lines}"))
    assert set(found) == {f"server.upstream.{k}" for k in UPSTREAM_KEYS}
    assert all(r.startswith("must be between") for r in found.values())


def test_the_default_event_window_must_fit_the_maximum(tmp_path: Path) -> None:
    found = problems(write_config(tmp_path, "[server.upstream]\ndefault_event_window = 500\nmax_event_window = 100"))
    assert found == {"server.upstream.default_event_window": "must be at most max_event_window (100), got 500"}


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("0o777", "lets every local user connect"),
        ("0o666", "lets every local user connect"),
        ("0o602", "lets every local user connect"),
        ("0o604", "other users"),
        ("0o700", "execute"),
        ("0o060", "own user unable to connect"),
        ("0o4600", "not a permission mode"),
    ],
)
def test_a_socket_mode_that_grants_too_much_is_refused_with_why(tmp_path: Path, mode: str, words: str) -> None:
    found = problems(write_config(tmp_path, f"[server.upstream]\nunix_mode = {mode}"))
    assert words in found.pop("server.upstream.unix_mode")
    assert not found


@pytest.mark.parametrize("mode", ["0o600", "0o660", "0o620"])
def test_owner_and_group_socket_modes_load(tmp_path: Path, mode: str) -> None:
    assert load_config(write_config(tmp_path, f"[server.upstream]\nunix_mode = {mode}")).server.upstream.unix_mode


# --- 4. engine back-off, store recovery ----------------------------------------------------------------


def test_a_retry_backoff_minimum_above_its_maximum_is_a_problem(tmp_path: Path) -> None:
    path = write_config(tmp_path, top="retry_backoff_min_seconds = 700.0\nretry_backoff_max_seconds = 600.0")
    assert problems(path) == {
        "engine.retry_backoff_min_seconds": "must be at most retry_backoff_max_seconds (600.0), got 700.0"
    }


def test_a_recovery_class_that_is_no_message_class_is_a_problem(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace("[engine]", '[store.recovery]\nmarketting = "at_least_once"\n[engine]'))
    found = problems(path)
    assert found.pop("store.recovery.marketting").startswith("'marketting' is not one of 'marketing'")
    assert not found


def test_a_partial_recovery_table_keeps_the_defaults_it_leaves_out(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace("[engine]", '[store.recovery]\nnotification = "at_most_once"\n[engine]'))
    store = load_config(path).store
    assert store.recovery == {
        "marketing": Recovery.AT_MOST_ONCE,  # its default, not at_least_once
        "notification": Recovery.AT_MOST_ONCE,
        "verification": Recovery.AT_LEAST_ONCE,
    }
    assert store.recovery_for("marketing") is Recovery.AT_MOST_ONCE


# --- 5. TLS files of binds ------------------------------------------------------------------------------


def test_tls_files_resolve_against_the_project_directory_and_must_exist(tmp_path: Path) -> None:
    bind = 'tls = true\ntls_ca_file = "certs/ca.pem"\ntls_cert_file = "certs/me.pem"\ntls_key_file = "/nonexistent.key"'
    found = problems(write_config(tmp_path, bind=bind))
    key = "carriers[0].binds[0]"
    assert found == {
        f"{key}.tls_ca_file": f"{tmp_path / 'certs/ca.pem'}: No such file or directory",
        f"{key}.tls_cert_file": f"{tmp_path / 'certs/me.pem'}: No such file or directory",
        f"{key}.tls_key_file": "/nonexistent.key: No such file or directory",
    }


def test_a_tls_file_that_is_not_a_certificate_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    (tmp_path / "dir").mkdir()
    found = problems(write_config(tmp_path, bind='tls = true\ntls_ca_file = "ca.pem"\ntls_cert_file = "dir"'))
    assert found == {"carriers[0].binds[0].tls_cert_file": f"{tmp_path / 'dir'}: not a regular file"}
    found = problems(write_config(tmp_path, bind='tls = true\ntls_ca_file = "ca.pem"'))
    assert "no CA certificate in it" in found.pop("carriers[0].binds[0].tls_ca_file")
    assert not found


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_tls_file_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "ca.pem").chmod(0)
    found = problems(write_config(tmp_path, bind='tls = true\ntls_ca_file = "ca.pem"'))
    assert found == {"carriers[0].binds[0].tls_ca_file": f"{tmp_path / 'ca.pem'}: Permission denied"}


def test_tls_settings_on_a_plain_bind_are_a_problem(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    found = problems(write_config(tmp_path, bind='tls_ca_file = "ca.pem"\ntls_server_name = "smsc"'))
    assert set(found) == {"carriers[0].binds[0].tls_ca_file", "carriers[0].binds[0].tls_server_name"}
    assert all("tls is false" in reason for reason in found.values())


def _self_signed(directory: Path) -> None:
    """cert.pem and its key.pem, and encrypted.pem: that key under a passphrase."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available to make a test certificate")
    key = str(directory / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", key,
         "-out", str(directory / "cert.pem"), "-subj", "/CN=localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "pkey", "-in", key, "-aes256", "-passout", "pass:secret", "-out", str(directory / "encrypted.pem")],
        check=True, capture_output=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_a_certificate_and_its_key_load(tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    _self_signed(tmp_path / "tls")
    bind = 'tls = true\ntls_ca_file = "tls/cert.pem"\ntls_cert_file = "tls/cert.pem"\ntls_key_file = "tls/key.pem"'
    b = load_config(write_config(tmp_path, bind=bind)).carriers[0].binds[0]
    assert (b.tls_ca_file, b.tls_key_file) == (str(tmp_path / "tls/cert.pem"), str(tmp_path / "tls/key.pem"))
    for key in ("app.secret", "tls/encrypted.pem"):  # no key at all; a key under a passphrase nobody can type
        bind = f'tls = true\ntls_cert_file = "tls/cert.pem"\ntls_key_file = "{key}"'
        found = problems(write_config(tmp_path, bind=bind))
        assert "not a certificate and its unencrypted private key" in found.pop("carriers[0].binds[0].tls_cert_file")
        assert not found
