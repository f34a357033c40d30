# ruff: noqa: RUF001 - Chinese texts with full-width punctuation, as platforms send them
"""Routing end to end: numbers checked against real numbering plans, carriers chosen by network and class,
a text one carrier blocks sent by another, refusals that say why, routes reloaded under load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import trio

from gateway.app import CarrierSection, build_routing
from gateway.engine import EngineSettings, RouteSettings
from gateway.engine.portability import PortabilitySettings
from gateway.engine.settings import ConnectionSettings, ErrorBudgetSettings, NetworkSettings, WordListSettings
from gateway.smpp.constants import CommandStatus
from gateway.upstream import MessageClass, SubmitRequest

from .harness import TEST_PREFIXES
from .test_survival import LIMIT, carrier, finals, numbers, poll_until, send, sim_config, two_carriers

CN_ENGINE = EngineSettings(default_region="CN", test_prefixes=TEST_PREFIXES, scheduler_poll_seconds=0.1)
NETWORKS = (
    NetworkSettings("china-mobile", ("86134", "86135", "86136", "86137", "86138", "86139")),
    NetworkSettings("china-unicom", ("86130", "86131", "86132")),
)


def strict_a(ports: dict[str, int], tmp: Path) -> list[CarrierSection]:
    """"a" blocks the finance words, "b" takes them."""
    return [carrier("a", ports["a"], tmp, blocked_words=("finance",)), carrier("b", ports["b"], tmp)]


async def test_each_number_goes_to_its_networks_carrier_and_a_blocked_text_to_the_one_that_takes_it(
    tmp_path: Path,
) -> None:
    routes = (
        RouteSettings(name="mobile", networks=("china-mobile",), carriers=("a", "b")),
        RouteSettings(name="unicom", networks=("china-unicom",), carriers=("b", "a")),
    )
    words = (WordListSettings("finance", ("贷款", "代开发票")),)
    with trio.fail_after(LIMIT):
        async with two_carriers(
            tmp_path, {"a": sim_config(), "b": sim_config()}, carriers=lambda ports: strict_a(ports, tmp_path),
            engine=CN_ENGINE, routes=routes, networks=NETWORKS, word_lists=words,
        ) as two, two.client() as client:  # fmt: skip
            # National numbers, as a Chinese platform sends them, read in the account's region.
            mobile = await send(client, ["13800138000", "13900139000"], "您的验证码是 482913")
            unicom = await send(client, ["13012345678"], "您的验证码是 482913")
            # "a" blocks the word even with a space inside it: the mobile numbers' text goes to "b".
            blocked = await send(client, ["13800138001"], "低息贷 款，快来办理")
            done = await finals(client, mobile + unicom + blocked)
            assert [done[i].carrier for i in mobile] == ["a", "a"]
            assert [done[i].carrier for i in unicom] == ["b"]
            assert [done[i].carrier for i in blocked] == ["b"]
            assert {e.kind for e in done.values()} == {"delivered"}
            (status,) = await client.status(message_id=mobile[0])
            assert status.to == "8613800138000"


async def test_refused_recipients_say_why_and_nothing_reaches_a_carrier(tmp_path: Path) -> None:
    routes = (
        RouteSettings(name="mobile", networks=("china-mobile",), carriers=("a",)),
        RouteSettings(name="cn-marketing", countries=("CN",), classes=("marketing",), mobile_only=True,
                      carriers=("b",)),
    )  # fmt: skip
    words = (WordListSettings("finance", ("贷款",)),)
    with trio.fail_after(LIMIT):
        async with two_carriers(
            tmp_path, {"a": sim_config(), "b": sim_config()}, carriers=lambda ports: strict_a(ports, tmp_path),
            engine=CN_ENGINE, routes=routes, networks=NETWORKS, word_lists=words,
        ) as two, two.client() as client:  # fmt: skip
            result = await client.submit(SubmitRequest(
                to=("999999999999999", "+4479", "13800138000", "+33612345678", "01012345678", "+8613012345678"),
                text="低息贷款", message_class=MessageClass.MARKETING, sender="ACME",
            ))  # fmt: skip
            got = [(m.state, m.reason, (m.detail or "").split(":")[0]) for m in result.messages]
            assert got == [
                ("rejected", "invalid_number", "too_long"),  # read first as a Chinese national number
                ("rejected", "invalid_number", "too_short"),
                ("rejected", "content_blocked", "route mobile"),  # its only carrier blocks the word
                ("rejected", "no_route", "no route takes +33612345678 for marketing from acme"),
                ("rejected", "invalid_number", "not_mobile"),  # a Beijing fixed line, and the route wants mobiles
                ("accepted", None, ""),  # unicom: route cn-marketing, carrier b
            ]
            assert "'贷款'" in (result.messages[2].detail or "")
            assert "finance" in (result.messages[2].detail or "")
            done = await finals(client, [m.message_id for m in result.messages])
            assert [e.reason for e in done.values()][:5] == [
                "invalid_number", "invalid_number", "content_blocked", "no_route", "invalid_number",
            ]  # fmt: skip
            assert done[result.messages[5].message_id].carrier == "b"
            assert two.sims["a"].stats()["submits_ok"] == 0
            assert two.sims["b"].stats()["submits_ok"] == 1


async def test_least_cost_and_weights_choose_among_carriers(tmp_path: Path) -> None:
    routes = (
        RouteSettings(name="otp", classes=("verification",), connections=(
            ConnectionSettings("a", weight=3), ConnectionSettings("b", weight=1))),
        RouteSettings(name="cheap", strategy="least_cost", connections=(
            ConnectionSettings("a", cost=0.05), ConnectionSettings("b", cost=0.03))),
    )  # fmt: skip
    with trio.fail_after(LIMIT):
        async with two_carriers(
            tmp_path, {"a": sim_config(), "b": sim_config()}, routes=routes, engine=CN_ENGINE,
        ) as two, two.client() as client:  # fmt: skip
            cheap = await send(client, [f"1380013{i:04d}" for i in range(20)])
            otp = []
            for i in range(10):
                result = await client.submit(SubmitRequest(
                    to=tuple(f"139{i:02d}{j:06d}" for j in range(40)), text="验证码 1234",
                    message_class=MessageClass.VERIFICATION, sender="ACME",
                ))  # fmt: skip
                otp += [m.message_id for m in result.messages]
            done = await finals(client, cheap + otp)
            assert {done[i].carrier for i in cheap} == {"b"}
            share = sum(done[i].carrier == "a" for i in otp) / len(otp)
            assert 0.65 < share < 0.85  # weights 3 : 1


async def test_routes_and_word_lists_reload_without_dropping_a_message(tmp_path: Path) -> None:
    words = (WordListSettings("finance", ("贷款",)),)
    with trio.fail_after(LIMIT):
        async with two_carriers(
            tmp_path, {"a": sim_config(), "b": sim_config()}, carriers=lambda ports: strict_a(ports, tmp_path),
            engine=CN_ENGINE, routes=(RouteSettings(name="all", carriers=("a", "b")),), word_lists=words,
        ) as two, two.client() as client:  # fmt: skip
            engine = two.running.engine
            before: list[str] = []
            after: list[str] = []
            between = trio.Lock()  # the swap falls between two submits, so each is known to be before or after
            async with trio.open_nursery() as nursery:

                async def traffic() -> None:
                    for i in range(40):
                        async with between:
                            ids = await send(client, [f"138{i:02d}{j:06d}" for j in range(10)], "贷款 today")
                            (before if engine.routing is routing_then else after).extend(ids)
                        await trio.sleep(0.01)

                routing_then = engine.routing
                nursery.start_soon(traffic)
                await trio.sleep(0.15)
                # As a SIGHUP does (app._handle_signals): "b" now blocks the word too, so new messages with it
                # find no carrier, while those accepted before keep the carrier their accept chose.
                new = build_routing(dataclasses.replace(
                    two.config,
                    carriers=tuple(dataclasses.replace(c, blocked_words=("finance",)) for c in two.config.carriers),
                ))  # fmt: skip
                assert new is not None
                async with between:
                    engine.set_routing(new)
            done = await finals(client, before + after)
            assert before
            assert after
            assert {done[i].kind for i in before} == {"delivered"}  # accepted before: they keep their route
            assert {done[i].carrier for i in before} == {"b"}  # "a" blocked the word from the start
            assert {(done[i].kind, done[i].reason) for i in after} == {("failed", "content_blocked")}



async def test_a_carrier_over_its_error_budget_is_skipped_for_a_cool_down(tmp_path: Path) -> None:
    # "a" answers ESME_RSYSERR to everything: each message fails over to "b" (issue 11). Past its budget
    # (more than half of at least 20 answers) "a" is skipped, and the next messages go to "b" directly.
    budget = ErrorBudgetSettings(max_error_rate=0.5, window_seconds=60.0, min_submits=20, cooldown_seconds=600.0)

    def configured(ports: dict[str, int]) -> list[CarrierSection]:
        return [carrier("a", ports["a"], tmp_path, error_budget=budget), carrier("b", ports["b"], tmp_path)]

    sims = {"a": sim_config(error_rate=1.0, error_status=int(CommandStatus.ESME_RSYSERR)), "b": sim_config()}
    with trio.fail_after(LIMIT):
        async with two_carriers(tmp_path, sims, carriers=configured) as two, two.client() as client:
            first = await send(client, numbers(100))
            done = await finals(client, first)
            assert {e.kind for e in done.values()} == {"delivered"}
            tried = two.sims["a"].counters.submits  # all of them: on their way to "a" before its answers came
            assert tried >= 20
            assert two.running.engine.counters["carrier_cool_downs"] == 1
            async with two.client() as again:  # one subscription per connection
                later = await send(again, numbers(100, start=100))
                done = await finals(again, later)
            assert {(e.kind, e.carrier) for e in done.values()} == {("delivered", "b")}
            assert two.sims["a"].counters.submits == tried  # not one more while it cools down


async def test_a_ported_number_goes_by_its_new_network_and_the_table_is_replaced_while_running(
    tmp_path: Path,
) -> None:
    routes = (
        RouteSettings(name="mobile", networks=("china-mobile",), carriers=("a",)),
        RouteSettings(name="unicom", networks=("china-unicom",), carriers=("b",)),
    )
    table = tmp_path / "ported.csv"
    table.write_text("number,network\n+8613800138000,china-unicom\n# a comment\n8613800138001,nowhere\n")
    with trio.fail_after(LIMIT):
        async with two_carriers(
            tmp_path, {"a": sim_config(), "b": sim_config()}, engine=CN_ENGINE, routes=routes, networks=NETWORKS,
            portability=PortabilitySettings(file=str(table)),
        ) as two, two.client() as client:  # fmt: skip
            engine = two.running.engine
            await poll_until(lambda: engine.portability.imports == 1)
            assert two.running.engine.store.ported_network("8613800138000") == "china-unicom"
            assert two.running.engine.store.ported_network("8613800138001") is None  # an unknown network: skipped
            first = await send(client, ["13800138000", "13800138002"])
            # The operator replaces the file and sends SIGHUP (app._handle_signals configures it again): the
            # number went back to its block's network.
            table.write_text("number,network\n8613800138002,china-unicom\n")
            engine.portability.configure(PortabilitySettings(file=str(table)), [n.name for n in NETWORKS])
            await poll_until(lambda: engine.portability.imports == 2)
            second = await send(client, ["13800138000", "13800138002"])
            done = await finals(client, first + second)
            assert [done[i].carrier for i in first] == ["b", "a"]
            assert [done[i].carrier for i in second] == ["a", "b"]
            assert engine.store.ported_generations() == (engine.store.ported_generation(),)  # the old one purged
            # Nothing changed since: a third look imports nothing.
            engine.portability.configure(PortabilitySettings(file=str(table)), [n.name for n in NETWORKS])
            assert not await engine.portability.import_if_changed()
            # A file saved as GBK, and one with a quoted field over the csv module's limit: the import is
            # refused (logged), the table in force stays, the gateway goes on.
            table.write_bytes("number,network\n8613800138003,china-unicom\n# 中国联通\n".encode("gbk"))
            engine.portability.configure(PortabilitySettings(file=str(table)), [n.name for n in NETWORKS])
            await trio.sleep(0.5)
            table.write_text('number,network\n8613800138003,"' + "x" * 200_000 + '"\n8613800138004,china-unicom\n')
            engine.portability.configure(PortabilitySettings(file=str(table)), [n.name for n in NETWORKS])
            await poll_until(lambda: engine.portability.imports == 3)
            assert engine.store.ported_network("8613800138004") == "china-unicom"
            assert engine.store.ported_network("8613800138002") is None  # the GBK file never took over
            # A network renamed: the file is read again against the new names, though it did not change (here
            # every row names the old name: refused and logged, the table in force stays).
            engine.portability.configure(PortabilitySettings(file=str(table)), ["china-mobile", "cu"])
            await trio.sleep(0.5)
            assert engine.portability.imports == 3
            table.write_text("number,network\n8613800138005,cu\n")
            engine.portability.configure(PortabilitySettings(file=str(table)), ["china-mobile", "cu"])
            await poll_until(lambda: engine.portability.imports == 4)
            assert engine.store.ported_network("8613800138005") == "cu"
