"""``[modules] extra``: a user's module loaded by dotted path (docs/modules.md example)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.live import LiveServer, connect_slixmpp, disconnect

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


async def test_example_module_from_the_docs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(EXAMPLES))
    srv = LiveServer(tmp_path, modules={"extra": ["descant_example:ExampleModule"]})
    srv.start()
    try:
        jid, pw = await srv.make_user("alice")
        alice = await connect_slixmpp(srv, jid, pw)
        try:
            iq = alice.make_iq_get(ito="localhost")
            iq.append(ET.Element("{urn:xmpp:time}time"))
            reply = await iq.send(timeout=10)
            assert reply.xml.find("{urn:xmpp:time}time/{urn:xmpp:time}utc") is not None
            info = await alice.plugin["xep_0030"].get_info(jid="localhost", timeout=10)
            assert "urn:xmpp:time" in info["disco_info"]["features"]
            alice.send_message(mto="echo@localhost", mbody="ping me back", mtype="chat")
            msg = await alice.next_message()
            assert msg["body"] == "ping me back"
            assert msg["from"].bare == "echo@localhost"
        finally:
            await disconnect(alice)
    finally:
        assert srv.stop() == 0, srv.log()[-3000:]


def test_bad_module_path_is_a_config_error(tmp_path: Path) -> None:
    srv = LiveServer(tmp_path, modules={"extra": ["no_such_package:Nope"]})
    with pytest.raises(RuntimeError, match=r"modules\.extra"):
        srv.start()
