"""The SMPP server face over TLS: an ESME that trusts the gateway's certificate binds, submits and gets its
receipt; a plain-text one gets nothing SMPP out of the port; a bad certificate is a config problem."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio

from gateway.app import load_config
from gateway.errors import ConfigError
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId, Tag
from gateway.smpp.constants import CommandStatus as S
from gateway.smpp.session import PduReceived, ResponseReceived, Session, SessionConfig
from gateway.smpp.state import Role
from tests.certs import self_signed
from tests.integration.gateway.smpp_harness import PASSWORD, SYSTEM_ID, smpp_gateway


async def _bind_submit_and_take_receipt(stream: trio.abc.Stream) -> tuple[str, str]:
    """Over `stream`: bind transceiver, one submit_sm with a receipt, until the receipt: (id, receipted id)."""
    session = Session(Role.ESME, SessionConfig(enquire_link_interval_seconds=0))
    session.send_request(P.BindTransceiver(system_id=SYSTEM_ID, password=PASSWORD), trio.current_time())
    await stream.send_all(session.data_to_send())
    message_id = receipted = ""
    while not receipted:
        data = await stream.receive_some(65536)
        assert data, "the gateway closed the connection"
        for event in session.receive_data(bytes(data), trio.current_time()):
            if isinstance(event, ResponseReceived):
                assert event.pdu.command_status == S.ESME_ROK, event.pdu
                if event.request.command_id == CommandId.BIND_TRANSCEIVER:
                    submit = P.SubmitSm(source_addr="ACME", destination_addr="447700900321",
                                        short_message=b"over TLS", registered_delivery=1)  # fmt: skip
                    session.send_request(submit, trio.current_time())
                else:
                    assert isinstance(event.pdu, P.SubmitSmResp)
                    message_id = event.pdu.message_id
            elif isinstance(event, PduReceived) and isinstance(event.pdu, P.DeliverSm):
                value = event.pdu.tlv(Tag.RECEIPTED_MESSAGE_ID)
                assert isinstance(value, str)
                receipted = value
                session.acknowledge(event.pdu)
        await stream.send_all(session.data_to_send())
    return message_id, receipted


async def test_an_esme_that_trusts_the_certificate_binds_submits_and_gets_its_receipt_over_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path, tls_cert_file=str(cert), tls_key_file=str(key)) as (_, port):
            client = ssl.create_default_context(cafile=str(cert))
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            stream = trio.SSLStream(tcp, client, server_hostname="127.0.0.1", https_compatible=False)
            try:
                message_id, receipted = await _bind_submit_and_take_receipt(stream)
            finally:
                await trio.aclose_forcefully(stream)
            assert message_id
            assert receipted == message_id

            # A plain-text bind on the TLS port: no bind_resp ever comes, the gateway closes the connection.
            plain = await trio.open_tcp_stream("127.0.0.1", port)
            session = Session(Role.ESME, SessionConfig(enquire_link_interval_seconds=0))
            session.send_request(P.BindTransceiver(system_id=SYSTEM_ID, password=PASSWORD), trio.current_time())
            await plain.send_all(session.data_to_send())
            with trio.move_on_after(5):
                events = []
                while data := await plain.receive_some(65536):
                    events += session.receive_data(bytes(data), trio.current_time())
                assert not any(isinstance(e, ResponseReceived) for e in events)
            await plain.aclose()


def test_a_tls_key_that_does_not_match_its_certificate_is_a_config_problem(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, wrong_key = self_signed(other)
    root = Path(__file__).resolve().parents[3]
    text = (root / "conf" / "gateway.toml").read_text().replace(
        "port = 2778 ", f'tls_cert_file = "{cert}"\ntls_key_file = "{wrong_key}"\nport = 2778 ', 1
    )
    for name in ("demo.secret", "demo.smpp.secret", "sim.secret"):
        (tmp_path / name).write_text((root / "conf" / name).read_text())
    text = text.replace("conf/", f"{tmp_path}/")
    config = tmp_path / "gateway.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    (problem,) = info.value.problems
    assert problem[1] == "smpp_server.tls_cert_file"
    assert "not a certificate and its unencrypted private key" in problem[2]
