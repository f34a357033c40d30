"""The config loader reports every problem at once, each with file, key and reason."""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.app import build_policy, load_config, reload_config
from gateway.config import build, changed_keys, choices, limits, load_toml, read_secret
from gateway.errors import ConfigError


class Mode(enum.Enum):
    TX = "transmitter"
    TRX = "transceiver"


@dataclass(frozen=True, slots=True)
class Bind:
    host: str
    port: int
    mode: Mode = Mode.TRX
    window: int = 100


@dataclass(frozen=True, slots=True)
class Carrier:
    name: str
    binds: tuple[Bind, ...]
    tps: float | None = None
    prefixes: tuple[str, ...] = ()


def test_valid_table_builds_frozen_dataclasses() -> None:
    carrier = build(
        Carrier,
        {"name": "acme", "tps": 50, "binds": [{"host": "127.0.0.1", "port": 2775, "mode": "transmitter"}]},
        file="c.toml",
    )
    assert carrier == Carrier("acme", (Bind("127.0.0.1", 2775, Mode.TX),), tps=50.0)


def test_every_problem_is_reported_with_file_key_and_reason() -> None:
    with pytest.raises(ConfigError) as info:
        build(
            Carrier,
            {
                "binds": [{"host": "h", "port": "2775", "mode": "sideways"}, {"port": 1, "colour": "red"}],
                "tps": "fast",
                "extra": 1,
            },
            file="carriers.toml",
            key="carrier",
        )
    found = {(key, reason.split(" ")[0]) for _, key, reason in info.value.problems}
    assert ("carrier.name", "required") in found
    assert ("carrier.binds[0].port", "expected") in found
    assert ("carrier.binds[0].mode", "'sideways'") in found
    assert ("carrier.binds[1].host", "required") in found
    assert ("carrier.binds[1].colour", "unknown") in found
    assert ("carrier.extra", "unknown") in found
    assert any(key == "carrier.tps" for _, key, _ in info.value.problems)
    assert all(file == "carriers.toml" for file, _, _ in info.value.problems)
    assert "carriers.toml: carrier.binds[0].port" in str(info.value)


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[server\nport = 1")
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    assert info.value.problems[0][0] == str(path)


def test_secrets_come_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_PW", "s3cret")
    assert read_secret(env="ACME_PW", file=None, what="password") == "s3cret"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    assert read_secret(env=None, file=secret, what="password") == "from-file"
    with pytest.raises(ConfigError):
        read_secret(env="NOPE_NOT_SET", file=None, what="password")


# --- values: limits, choices, finite floats -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listener:
    port: int | None = field(default=None, metadata=limits(1, 65535))
    backlog: int = field(default=128, metadata=limits(1, None))
    format: str = field(default="console", metadata=choices("console", "json"))
    timeout_seconds: float = 1.0
    ports: tuple[int, ...] = field(default=(), metadata=limits(1, 65535))


def problems_of(table: dict[str, object]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        build(Listener, table, file="l.toml", key="server")
    return {key: reason for _, key, reason in info.value.problems}


def test_numbers_outside_their_limits_are_reported_with_the_allowed_range() -> None:
    found = problems_of({"port": 99999, "backlog": -1, "ports": [80, 0, 70000]})
    assert found == {
        "server.port": "must be between 1 and 65535, got 99999",
        "server.backlog": "must be at least 1, got -1",
        "server.ports[1]": "must be between 1 and 65535, got 0",
        "server.ports[2]": "must be between 1 and 65535, got 70000",
    }


def test_values_inside_their_limits_and_none_build() -> None:
    assert build(Listener, {"port": 65535, "backlog": 1, "ports": [1]}, file="l.toml") == Listener(
        65535, 1, ports=(1,)
    )
    assert build(Listener, {}, file="l.toml").port is None


def test_a_string_outside_its_choices_is_reported_with_every_choice() -> None:
    assert problems_of({"format": "xml"}) == {"server.format": "'xml' is not one of 'console', 'json'"}


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_and_infinity_are_refused_for_every_float(value: str) -> None:
    """TOML has nan and inf literals; no duration, rate or share means either (a NaN deadline never fires)."""
    table = tomllib.loads(f"timeout_seconds = {value}")
    assert problems_of(table) == {"server.timeout_seconds": f"must be a finite number, got {float(value)!r}"}


def gateway_toml(tmp_path: Path, server: str = "", store: str = "", engine: str = "", sim_port: int = 2775) -> Path:
    """A valid gateway config with extra lines in its sections."""
    (tmp_path / "app.secret").write_text("s\n")
    (tmp_path / "sim.secret").write_text("s\n")
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[server]
socket_path = "{tmp_path / "gw.sock"}"
{server}
[store]
path = "{tmp_path / "store"}"
{store}
[engine]
{engine}
[[accounts]]
name = "app"
secret_file = "{tmp_path / "app.secret"}"

[[simulators]]
name = "sim"
port = {sim_port}

[[carriers]]
name = "sim"
[[carriers.binds]]
name = "b"
host = "127.0.0.1"
port = 2775
system_id = "gw"
password_file = "{tmp_path / "sim.secret"}"

[[routes]]
prefix = ""
carriers = ["sim"]
"""
    )
    return path


def test_the_gateway_config_refuses_impossible_values_all_at_once(tmp_path: Path) -> None:
    path = gateway_toml(
        tmp_path,
        server='tcp_port = 99999\nlog_level = "verbose"\nlog_format = "xml"\nshutdown_grace_seconds = -1.0',
        store="map_size_bytes = -5\nretention_days = -1.0\ngroup_max = 0\ngroup_wait_seconds = nan",
        engine="retry_max_attempts = -1\nretry_backoff_max_seconds = inf\nscheduler_poll_seconds = 0.0\n"
        "dispatch_batch = 0",
        sim_port=70000,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    found = {key: reason for _, key, reason in info.value.problems}
    assert found == {
        "server.tcp_port": "must be between 1 and 65535, got 99999",
        "server.log_level": "'verbose' is not one of 'debug', 'info', 'warning', 'error', 'critical'",
        "server.log_format": "'xml' is not one of 'console', 'json'",
        "server.shutdown_grace_seconds": "must be between 0.0 and 3600.0, got -1.0",
        "store.map_size_bytes": "must be at least 1048576, got -5",
        "store.retention_days": "must be between 0.0 and 36500.0, got -1.0",
        "store.group_max": "must be at least 1, got 0",
        "store.group_wait_seconds": "must be a finite number, got nan",
        "engine.retry_max_attempts": "must be between 0 and 1000, got -1",
        "engine.retry_backoff_max_seconds": "must be a finite number, got inf",
        "engine.scheduler_poll_seconds": "must be between 0.01 and 3600.0, got 0.0",
        "engine.dispatch_batch": "must be at least 1, got 0",
        "simulators[0].port": "must be between 1 and 65535, got 70000",
    }
    assert all(file == str(path) for file, _, _ in info.value.problems)


def test_the_shipped_config_is_within_every_limit() -> None:
    cfg = load_config(Path(__file__).resolve().parents[2] / "conf" / "gateway.toml")
    assert cfg.server.tcp_port == 2776
    assert cfg.server.log_level == "info"


# --- what a reload changed ------------------------------------------------------------------------------


def test_changed_keys_names_each_changed_value_and_a_new_table_once(tmp_path: Path) -> None:
    old = load_config(gateway_toml(tmp_path, server='log_level = "info"'))
    path = gateway_toml(tmp_path, server='log_level = "debug"', engine="retry_max_attempts = 7")
    path.write_text(path.read_text() + '\n[[simulators]]\nname = "sim2"\nport = 2776\n')
    new = load_config(path)
    assert changed_keys(old, new) == ["engine.retry_max_attempts", "server.log_level", "simulators[1]"]
    assert changed_keys(new, old) == ["engine.retry_max_attempts", "server.log_level", "simulators[1]"]
    assert changed_keys(old, old) == []


# --- routing ----------------------------------------------------------------------------------------------


def test_bad_routing_is_refused_with_every_problem_at_once(tmp_path: Path) -> None:
    path = gateway_toml(tmp_path, engine='default_region = "XX"\ntest_prefixes = ["44x"]')
    blocking = 'name = "sim"\nblocked_words = ["nope"]\n[[carriers.binds]]'
    path.write_text(
        path.read_text().replace('name = "sim"\n[[carriers.binds]]', blocking)
        + '\n[[networks]]\nname = "net"\nblocks = ["86138", "8613x"]\n'
        + '\n[[word_lists]]\nname = "w"\nfile = "missing-words.txt"\n'
        + '\n[[word_lists]]\nname = "empty"\n'
        + '\n[[routes]]\nname = "r2"\nnetworks = ["elsewhere"]\ncountries = ["ZZ"]\nclasses = ["promo"]\n'
        + 'strategy = "cheapest"\nconnections = [{ carrier = "gone", weight = 0 }]\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    found = {key: reason for _, key, reason in info.value.problems}
    assert found["routes[1].classes[0]"].startswith("'promo' is not one of")
    assert found["routes[1].strategy"] == "'cheapest' is not one of 'priority', 'least_cost'"
    assert found["routes[1].connections[0].weight"].startswith("must be between")
    assert found["word_lists[1]"] == "needs words or a file"
    # Reported before anything is built: the references the tables make to each other come after.
    path.write_text(path.read_text().replace('classes = ["promo"]\n', "").replace('strategy = "cheapest"\n', "")
                    .replace("weight = 0", "weight = 1").replace('\n[[word_lists]]\nname = "empty"\n', ""))  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_config(path)
    found = {key: reason for _, key, reason in info.value.problems}
    assert found == {
        "engine.test_prefixes": "test prefix '44x' must be digits",
        "engine.default_region": "'XX' is not an ISO 3166 region",
        "networks": "network 'net': block '8613x' must be digits",
        "word_lists[0].file": found["word_lists[0].file"],
        "carriers[0].blocked_words": "no word list 'nope'",
        "routes[1].connections": "unknown carrier 'gone'",
        "routes[1].networks": "no network 'elsewhere'",
        "routes[1].countries": "'ZZ' is not an ISO 3166 region",
    }
    assert "missing-words.txt" in found["word_lists[0].file"]


def test_the_china_example_routes_each_operators_numbers_to_its_own_smsc() -> None:
    import random

    from gateway.app import build_routing
    from gateway.routing.numbers import Number
    from gateway.routing.router import Plan, Refusal

    cfg = load_config(Path(__file__).resolve().parents[2] / "conf" / "examples" / "china.toml")
    routing = build_routing(cfg)
    assert routing is not None
    networks = routing.router.networks
    # The blocks the issue lists, one sample each: China Mobile, China Unicom, China Telecom.
    mobile = [134, 135, 136, 137, 138, 139, 147, 150, 151, 152, 157, 158, 159, 178, 182, 183, 184, 187, 188, 198]
    unicom = [130, 131, 132, 145, 155, 156, 166, 175, 176, 185, 186]
    telecom = [133, 149, 153, 173, 177, 180, 181, 189, 199]
    for blocks, name in ((mobile, "china-mobile"), (unicom, "china-unicom"), (telecom, "china-telecom")):
        assert [networks.network_of(f"86{b}12345678") for b in blocks] == [name] * len(blocks)

    def decide(number: str, cls: str, text: str = "您的验证码是 123456") -> Plan | Refusal:
        found = routing.numbers.parse(number, routing.region_of("demo"))
        assert isinstance(found, Number), found
        return routing.router.decide(found, account="demo", message_class=cls, sender="", text=text,
                                     rng=random.Random(1))  # fmt: skip

    plans = {n: decide(n, "notification") for n in ("13800138000", "13012345678", "13312345678")}
    assert [(p.route, p.carriers[0]) for p in plans.values() if isinstance(p, Plan)] == [
        ("mobile", "cmcc"), ("unicom", "cucc"), ("telecom", "ctcc"),
    ]  # fmt: skip
    cheapest = decide("13800138000", "marketing", "周末特卖 全场五折")
    assert isinstance(cheapest, Plan)
    assert cheapest.carriers == ("cucc", "ctcc", "cmcc")  # 0.040 < 0.042 < 0.045 a part


def test_a_config_that_is_not_utf8_is_refused_with_the_byte(tmp_path: Path) -> None:
    path = gateway_toml(tmp_path)
    path.write_bytes(path.read_bytes() + "\n# 中国移动\n".encode("gbk"))  # a comment saved by a GBK editor
    with pytest.raises(ConfigError) as info:
        load_config(path)
    ((file, key, reason),) = info.value.problems
    assert (file, key) == (str(path), "-")
    assert reason.startswith("not UTF-8 at byte ")
    directory = tmp_path / "conf.d"
    directory.mkdir()
    with pytest.raises(ConfigError):
        load_toml(directory)


def test_routes_that_could_never_match_as_written_are_refused(tmp_path: Path) -> None:
    path = gateway_toml(tmp_path)
    path.write_text(
        path.read_text()
        + '\n[[routes]]\nname = "cheap"\nstrategy = "least_cost"\n'
        + 'connections = [{ carrier = "sim", cost = 0.05 }, { carrier = "sim" }]\n'
        + '\n[[routes]]\nname = "typo"\naccounts = ["dem0"]\nsenders = ["way too long sender name"]\n'
        + 'prefix = "44"\nprefixes = ["447"]\ncarriers = ["sim"]\nconnections = [{ carrier = "sim" }]\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    found = {key: reason for _, key, reason in info.value.problems}
    assert found == {
        "routes[1].connections[1].cost": "required for least_cost (the price per part)",
        "routes[1].connections": "carrier 'sim' is named twice",
        "routes[2].connections": "carrier 'sim' is named twice",
        "routes[2].prefix": "give prefix or prefixes, not both",
        "routes[2].accounts": "no account 'dem0'",
        "routes[2].senders": "'way too long sender name' can never match: a sender is 1-20 characters",
    }


def test_a_reload_sees_a_changed_word_file_though_no_key_changed(tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("\ufeff# blocked by the carrier\n贷款\n", encoding="utf-8")  # a BOM before a comment
    path = gateway_toml(tmp_path)
    blocking = 'name = "sim"\nblocked_words = ["w"]\n[[carriers.binds]]'
    path.write_text(
        path.read_text().replace('name = "sim"\n[[carriers.binds]]', blocking)
        + f'\n[[word_lists]]\nname = "w"\nfile = "{words}"\n'
    )
    old = load_config(path)
    assert old.word_lists[0].file_words == ("贷款",)
    words.write_text("贷款\n代开发票\n", encoding="utf-8")
    new = load_config(path)
    assert changed_keys(old, new) == ["word_lists[0].file_words"]
    running, routing, _, _, _ = reload_config(path, old)
    assert routing is not None
    assert routing.router.words is not None
    assert [hit.word for hit in routing.router.words.hits("代开发票")] == ["代开发票"]
    assert running.word_lists[0].file_words == ("贷款", "代开发票")
    words.write_bytes("赌博\n".encode("gbk"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    found = [(key, reason.split(": ")[-1]) for _, key, reason in info.value.problems]
    assert found == [("word_lists[0].file", "not UTF-8 at byte 0")]


# --- compliance -----------------------------------------------------------------------------------------


def test_the_china_example_carries_the_marketplace_rules() -> None:
    cfg = load_config(Path(__file__).resolve().parents[2] / "conf" / "examples" / "china.toml")
    policy = build_policy(cfg)
    assert policy is not None
    caps = policy.caps("demo", "ACME", "notification", offers_optout=False)
    assert [(c.rule, c.scope, c.limit) for c in caps] == [("seller-notification-day", "demo", 2)]
    marketing = policy.caps("demo", "ACME", "marketing", offers_optout=True)
    assert [c.rule for c in marketing] == ["all-marketing-day", "all-marketing-2days", "seller-marketing-2days"]
    verdict = policy.text("demo", "marketing", "【Acme】Spring sale", None)
    assert (verdict.text, verdict.offers_optout) == ("【Acme】Spring sale回T退订", True)
    assert policy.text("demo", "marketing", "Spring sale", None).reject == "signature_missing"


def test_bad_compliance_rules_are_refused_with_every_problem_at_once(tmp_path: Path) -> None:
    path = gateway_toml(tmp_path)
    text = path.read_text().replace(
        'secret_file = "', 'time_zone = "Mars/Olympus"\nappend_optout = "bye"\nsignatures = ["X"]\nsecret_file = "', 1
    )
    path.write_text(
        text
        + '\n[compliance]\nwindow = "9-21"\nbanned_words = ["nope"]\noptout_keywords = ["!!!"]\n'
        + '\n[[caps]]\nname = "day"\nlimit = 1\nwindow_seconds = 86400\n'
        + '\n[[caps]]\nname = "day"\nlimit = 0\nwindow_seconds = 86400\nscope = "planet"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    found = {key: reason for _, key, reason in info.value.problems}
    assert set(found) == {"caps[1].limit", "caps[1].scope"}  # each table's own values first
    fixed = path.read_text().replace('limit = 0\nwindow_seconds = 86400\nscope = "planet"\n', "limit = 2\n")
    path.write_text(fixed.replace("limit = 2\n", "limit = 2\nwindow_seconds = 60\n"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    found = {key: reason for _, key, reason in info.value.problems}
    assert set(found) == {
        "compliance.window", "compliance.banned_words", "compliance.optout_keywords", "accounts[0].time_zone",
        "accounts[0].append_optout", "accounts[0].signatures", "caps",
    }
    assert found["accounts[0].signatures"] == "'X': signature 【X】 is 1 unit, at least 2 (1 CJK or 2 Latin characters)"
    assert found["caps"] == "cap 'day' is defined twice"
    assert found["compliance.banned_words"] == "no word list 'nope'"


def test_a_reload_whose_rules_name_routing_it_cannot_apply_keeps_both(tmp_path: Path) -> None:
    """The new compliance table bans a new word list, but the routing that would bring the list names a
    carrier the file does not define: both the routing and the compliance reload are refused, and nothing
    raises."""
    path = gateway_toml(tmp_path)
    old = load_config(path)
    path.write_text(
        path.read_text().replace('carriers = ["sim"]', 'carriers = ["sim", "other"]')
        + '\n[[word_lists]]\nname = "ads"\nwords = ["最低价"]\n'
        + '\n[compliance]\nbanned_words = ["ads"]\n'
    )
    with pytest.raises(ConfigError):  # load_config itself refuses a route to no carrier
        load_config(path)
    running, routing, policy, report, change = reload_config(path, old)
    assert report.refused
    assert change.empty
    assert (routing, policy) == (None, None)
    assert running.compliance is None
    assert running.word_lists == ()


def test_a_reload_adds_a_carrier_with_the_routes_and_rules_that_name_it(tmp_path: Path) -> None:
    """A new carrier, the route that names it, and the compliance table that bans a word list: one change,
    applied together (Gateway.reload starts the carrier's binds before it swaps the routing in)."""
    path = gateway_toml(tmp_path)
    old = load_config(path)
    new_carrier = (
        '\n[[carriers]]\nname = "other"\n[[carriers.binds]]\nname = "o"\nhost = "127.0.0.1"\nport = 2777\n'
        f'system_id = "gw"\npassword_file = "{tmp_path / "sim.secret"}"\n'
    )
    path.write_text(
        path.read_text().replace('carriers = ["sim"]', 'carriers = ["sim", "other"]') + new_carrier
        + '\n[[word_lists]]\nname = "ads"\nwords = ["最低价"]\n'
        + '\n[compliance]\nbanned_words = ["ads"]\n'
    )
    running, routing, policy, report, change = reload_config(path, old)
    assert not report.refused
    assert report.restart_needed == ()
    assert routing is not None
    assert policy is not None
    assert [c.name for c in change.added] == ["other"]
    assert (change.removed, change.rebound, change.retuned, change.accounts) == ((), (), (), None)
    assert [c.name for c in running.carriers] == ["sim", "other"]
    assert running.compliance is not None
