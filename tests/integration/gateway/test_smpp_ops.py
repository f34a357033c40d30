"""The SMPP server face as an operator runs it: `gatewayctl status` shows it, a reload rotates a password and
changes an account's limits for the next bind while a bound ESME keeps going."""

from __future__ import annotations

from pathlib import Path

import trio

from gateway.app import Gateway, Running, load_config
from gateway.sim.config import IdFormat as SimIdFormat
from gateway.sim.config import SimConfig
from gateway.sim.server import Simulator
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId, Tag
from gateway.smpp.constants import CommandStatus as S
from gateway.smpp.receipt import parse_receipt
from gateway.smpp.session import PduReceived, ResponseReceived, Session, SessionConfig
from gateway.smpp.state import Role

from .harness import ctl_json
from .smpp_harness import PASSWORD, SYSTEM_ID, smpp_gateway


class Esme:
    """A sans-IO ESME over a real socket: bind, submit, read the answers."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.session = Session(Role.ESME, SessionConfig(enquire_link_interval_seconds=0))

    @classmethod
    async def bind(
        cls, port: int, password: str, system_id: str = SYSTEM_ID, interface_version: int = 0x34
    ) -> tuple[Esme, int]:
        esme = cls(await trio.open_tcp_stream("127.0.0.1", port))
        bind = P.BindTransceiver(system_id=system_id, password=password, interface_version=interface_version)
        resp = await esme.request(bind)
        return esme, int(resp.command_status)

    async def deliver(self, status: int = S.ESME_ROK) -> P.DeliverSm:
        """The next deliver_sm, answered with `status`."""
        while True:
            data = await self.stream.receive_some(65536)
            assert data, "the gateway closed the connection"
            for event in self.session.receive_data(bytes(data), trio.current_time()):
                if isinstance(event, PduReceived) and isinstance(event.pdu, P.DeliverSm):
                    self.session.acknowledge(event.pdu, status)
                    await self.stream.send_all(self.session.data_to_send())
                    return event.pdu

    async def request(self, pdu: P.Pdu) -> P.Pdu:
        seq = self.session.send_request(pdu, trio.current_time())
        await self.stream.send_all(self.session.data_to_send())
        while True:
            data = await self.stream.receive_some(65536)
            assert data, "the gateway closed the connection"
            for event in self.session.receive_data(bytes(data), trio.current_time()):
                if isinstance(event, ResponseReceived) and event.request.sequence_number == seq:
                    return event.pdu

    async def submit(self, to: str = "447700900555", receipt: bool = False) -> P.Pdu:
        return await self.request(P.SubmitSm(source_addr="ACME", destination_addr=to, short_message=b"ops",
                                             registered_delivery=int(receipt)))  # fmt: skip

    async def aclose(self) -> None:
        await self.stream.aclose()


async def test_gatewayctl_status_shows_the_smpp_face_its_binds_and_submits(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path) as (h, port):
            esme, status = await Esme.bind(port, PASSWORD)
            assert status == S.ESME_ROK
            assert (await esme.submit()).command_status == S.ESME_ROK
            code, report = await ctl_json(h, "status")
            assert code == 0
            assert report["sockets"]["smpp"] == ["127.0.0.1", port]
            face = report["smpp_server"]
            assert face["bound"] == 1
            assert face["submits"] == 1
            assert face["binds_refused"] == 0
            await esme.aclose()


def _config(tmp: Path, sim_port: int, max_binds: int) -> str:
    return f"""
[store]
path = "{tmp}/store"
sync = false
map_size_bytes = 268435456

[server]
socket_path = "{tmp}/gw.sock"
log_level = "info"
shutdown_grace_seconds = 2.0

[engine]
default_region = "GB"
test_prefixes = ["4477"]

[[accounts]]
name = "acme"
secret_file = "acme.secret"

[[carriers]]
name = "sim"
[[carriers.binds]]
name = "sim-trx"
host = "127.0.0.1"
port = {sim_port}
system_id = "gw"
password_file = "sim.secret"
mode = "transceiver"

[[routes]]
carriers = ["sim"]

[smpp_server]
port = 0
auth_failure_delay_seconds = 0.01
[[smpp_server.accounts]]
account = "acme"
system_id = "{SYSTEM_ID}"
password_file = "smpp.secret"
max_binds = {max_binds}
"""


async def test_a_reload_rotates_the_password_and_limits_for_new_binds_and_keeps_the_bound_esme(tmp_path: Path) -> None:
    for name, value in (("acme.secret", "s3cret"), ("sim.secret", "simpw"), ("smpp.secret", "old-pw")):
        (tmp_path / name).write_text(value)
    sim = Simulator(SimConfig(credentials=(("gw", "simpw"),), id_format=SimIdFormat.HEX, seed=5))
    conf = tmp_path / "gateway.toml"
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            sim_port = await nursery.start(sim.serve, "127.0.0.1", 0)
            conf.write_text(_config(tmp_path, sim_port, max_binds=4))
            gateway = Gateway(load_config(conf), config_path=conf)
            running: Running = await nursery.start(gateway.run)
            assert running.smpp is not None
            port = running.smpp.port
            bound, status = await Esme.bind(port, "old-pw")
            assert status == S.ESME_ROK

            # The password rotated in its file, and max_binds lowered to the one bound now.
            (tmp_path / "smpp.secret").write_text("new-pw")
            conf.write_text(_config(tmp_path, sim_port, max_binds=1))
            report = await gateway.reload()
            assert not report.refused, report.problems
            assert "smpp_server.accounts[0].max_binds" in report.applied
            assert not report.restart_needed

            other, status = await Esme.bind(port, "old-pw")
            assert status == S.ESME_RINVPASWD
            await other.aclose()
            other, status = await Esme.bind(port, "new-pw")
            assert status == S.ESME_RBINDFAIL  # the new password, but max_binds is 1 now
            await other.aclose()
            # The ESME bound before the reload keeps its bind and its submits go on.
            resp = await bound.submit()
            assert resp.command_id == CommandId.SUBMIT_SM_RESP
            assert resp.command_status == S.ESME_ROK
            await bound.aclose()
            gateway.shutdown()
            await gateway.stopped.wait()
            nursery.cancel_scope.cancel()


async def test_an_smpp_33_esme_gets_its_receipts_without_optional_parameters(tmp_path: Path) -> None:
    # SMPP 3.4 5.2.4: an ESME bound with interface_version 0x33 knows no TLVs; the receipt's text says it all.
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path) as (_, port):
            esme, status = await Esme.bind(port, PASSWORD, interface_version=0x33)
            assert status == S.ESME_ROK
            resp = await esme.submit(receipt=True)
            assert isinstance(resp, P.SubmitSmResp)
            assert resp.command_status == S.ESME_ROK
            receipt = await esme.deliver()
            assert receipt.tlvs == ()
            parsed = parse_receipt(receipt.short_message)
            assert parsed.message_id == resp.message_id
            assert parsed.stat == "DELIVRD"
            await esme.aclose()


async def test_a_receipt_the_esme_keeps_refusing_is_given_up_and_the_next_ones_still_come(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path, redeliver_seconds=0.1, redeliver_attempts=3) as (h, port):
            esme, status = await Esme.bind(port, PASSWORD)
            assert status == S.ESME_ROK
            first = await esme.submit("447700900601", receipt=True)
            assert isinstance(first, P.SubmitSmResp)
            for _ in range(3):  # a temporary refusal, three times: the third is the last try
                receipt = await esme.deliver(S.ESME_RX_T_APPN)
                assert receipt.tlv(Tag.RECEIPTED_MESSAGE_ID) == first.message_id
            second = await esme.submit("447700900602", receipt=True)
            assert isinstance(second, P.SubmitSmResp)
            receipt = await esme.deliver()
            assert receipt.tlv(Tag.RECEIPTED_MESSAGE_ID) == second.message_id
            smpp = h.running.smpp
            assert smpp is not None
            assert smpp.statistics().deliver_given_up == 1
            await esme.aclose()
