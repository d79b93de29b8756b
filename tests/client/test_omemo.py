"""OMEMO (XEP-0384) end to end through slixmpp-omemo, a client library nobody here wrote.

What the server must get right for it: PEP publish with publish-options
(``pubsub#access_model=open``, ``persist_items``, ``max_items``) for the device lists
and bundles of both OMEMO namespaces, item retrieval by anyone (open access model), and
+notify delivery of device-list updates to contacts (the library relies on those when the
subscription is mutual; it never re-downloads a contact's list itself then).

slixmpp-omemo 2.x publishes under both ``eu.siacs.conversations.axolotl`` (oldmemo) and
``urn:xmpp:omemo:2`` (twomemo) but encrypts only with oldmemo: twomemo needs XEP-0420
(SCE), which slixmpp lacks. Trust is BTBV (blind trust before verification).
"""

from __future__ import annotations

import asyncio
import copy
import json
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import slixmpp
from slixmpp import JID

from tests.client.pep_util import befriend, connect_with, item_ids
from tests.live import Client, LiveServer, disconnect

pytest.importorskip(
    "slixmpp_omemo", reason="slixmpp-omemo is not installed (pip install -e '.[test]')"
)

from omemo.storage import Just, Maybe, Nothing, Storage
from omemo.types import DeviceInformation, JSONType
from slixmpp.plugins import register_plugin
from slixmpp_omemo import XEP_0384

# slixmpp-omemo reaches plugins through xmpp["..."], which slixmpp 1.17 deprecates.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Accessing plugins through the XMPP object:DeprecationWarning"
)

OLDMEMO = "eu.siacs.conversations.axolotl"
TWOMEMO = "urn:xmpp:omemo:2"
OLDMEMO_DEVICES = f"{OLDMEMO}.devicelist"
TWOMEMO_DEVICES = f"{TWOMEMO}:devices"
TWOMEMO_BUNDLES = f"{TWOMEMO}:bundles"


class MemoryStorage(Storage):  # type: ignore[misc]
    """The key-value store python-omemo needs, kept in memory as JSON values."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, JSONType] = {}

    async def _load(self, key: str) -> Maybe[JSONType]:
        if key in self.data:
            return Just(copy.deepcopy(self.data[key]))
        return Nothing()

    async def _store(self, key: str, value: JSONType) -> None:
        self.data[key] = json.loads(json.dumps(value))

    async def _delete(self, key: str) -> None:
        self.data.pop(key, None)


class OmemoPlugin(XEP_0384):  # type: ignore[misc]
    """slixmpp-omemo's plugin with per-client in-memory storage and blind trust."""

    default_config = {
        "fallback_message": "This message is OMEMO encrypted.",
        "omemo_storage": None,
    }

    def plugin_init(self) -> None:
        self._storage: Storage = self.omemo_storage or MemoryStorage()
        super().plugin_init()

    @property
    def storage(self) -> Storage:
        return self._storage

    @property
    def _btbv_enabled(self) -> bool:
        return True

    async def _devices_blindly_trusted(
        self, blindly_trusted: frozenset[DeviceInformation], identifier: str | None
    ) -> None:
        pass

    async def _prompt_manual_trust(
        self, manually_trusted: frozenset[DeviceInformation], identifier: str | None
    ) -> None:
        raise AssertionError(f"BTBV is on; no manual trust decision expected: {manually_trusted}")


register_plugin(OmemoPlugin)


async def omemo_client(server: LiveServer, jid: str, password: str) -> tuple[Client, Any]:
    """A logged-in client whose OMEMO device has published its device lists and bundles."""
    client = await connect_with(
        server,
        jid,
        password,
        plugins=["xep_0384"],
        config={"xep_0384": {"omemo_storage": MemoryStorage()}},
        # The plugin asks for these itself, but before bind; ask again for the bound JID.
        interests=[OLDMEMO_DEVICES, TWOMEMO_DEVICES],
    )
    # Awaiting the plugin's own set-up task re-raises whatever failed in it (a rejected
    # publish, say) instead of timing out silently.
    manager = await asyncio.wait_for(client.plugin["xep_0384"].get_session_manager(), 60)
    return client, manager


async def until_async(
    cond: Callable[[], Awaitable[bool]], timeout: float = 10, what: str = "condition"
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await cond():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.1)


async def device_ids(manager: Any, bare: str) -> set[int]:
    return {d.device_id for d in await manager.get_device_information(bare)}


async def own_device_id(manager: Any) -> int:
    return int((await manager.get_own_device_information())[0].device_id)


async def next_encrypted(client: Client, timeout: float = 10) -> slixmpp.Message:
    async def wait() -> slixmpp.Message:
        while True:
            msg = await client.messages.get()
            if client.plugin["xep_0384"].is_encrypted(msg):
                return msg

    try:
        return await asyncio.wait_for(wait(), timeout)
    except TimeoutError:
        raise AssertionError(f"{client.boundjid} got no encrypted message") from None


def key_recipients(msg: slixmpp.Message) -> set[int]:
    """The device ids an oldmemo message carries a key for."""
    return {
        int(k.get("rid", "0"))
        for k in msg.xml.findall(f"{{{OLDMEMO}}}encrypted/{{{OLDMEMO}}}header/{{{OLDMEMO}}}key")
    }


async def encrypt(sender: Client, to: str, body: str) -> slixmpp.Message:
    msg = sender.make_message(mto=JID(to), mtype="chat")
    msg["body"] = body
    encrypted, errors = await sender.plugin["xep_0384"].encrypt_message(msg, JID(JID(to).bare))
    assert encrypted is not None, f"nothing to send; errors: {errors}"
    assert body not in str(encrypted)
    assert encrypted.xml.find(f"{{{OLDMEMO}}}encrypted") is not None
    return encrypted  # type: ignore[no-any-return]


async def test_omemo_published_data_readable_by_anyone(server: LiveServer) -> None:
    """Device lists and bundles of both namespaces land on PEP with the open access model:
    a stranger (no subscription) can read them."""
    b_jid, b_pw = await server.make_user("bob")
    d_jid, d_pw = await server.make_user("dave")
    bob, manager = await omemo_client(server, b_jid + "/phone", b_pw)
    dave = await connect_with(server, d_jid, d_pw)
    try:
        dev = await own_device_id(manager)
        ps = dave.plugin["xep_0060"]

        old_list = await ps.get_items(b_jid, OLDMEMO_DEVICES)
        ids = {el.get("id") for el in old_list.xml.iter(f"{{{OLDMEMO}}}device")}
        assert str(dev) in ids, ET.tostring(old_list.xml)
        new_list = await ps.get_items(b_jid, TWOMEMO_DEVICES)
        ids = {el.get("id") for el in new_list.xml.iter(f"{{{TWOMEMO}}}device")}
        assert str(dev) in ids, ET.tostring(new_list.xml)

        old_bundle = await ps.get_items(b_jid, f"{OLDMEMO}.bundles:{dev}", max_items=1)
        assert old_bundle.xml.find(f".//{{{OLDMEMO}}}bundle") is not None
        new_bundle = await ps.get_items(b_jid, TWOMEMO_BUNDLES, item_ids=[str(dev)])
        assert item_ids(new_bundle) == [str(dev)]
        assert new_bundle.xml.find(f".//{{{TWOMEMO}}}bundle") is not None
    finally:
        await disconnect(bob, dave)


async def test_omemo_message_and_a_device_that_comes_later(server: LiveServer) -> None:
    a_jid, a_pw = await server.make_user("alice")
    b_jid, b_pw = await server.make_user("bob")
    alice, alice_sm = await omemo_client(server, a_jid + "/omemo", a_pw)
    phone, phone_sm = await omemo_client(server, b_jid + "/phone", b_pw)
    laptop: Client | None = None
    try:
        await befriend(alice, phone)
        alice_dev = await own_device_id(alice_sm)
        phone_dev = await own_device_id(phone_sm)

        # Bob's device list reaches Alice as a +notify PEP notification.
        async def alice_knows(dev: int) -> bool:
            return dev in await device_ids(alice_sm, b_jid)

        await until_async(lambda: alice_knows(phone_dev), what="Alice learning Bob's phone")

        first = await encrypt(alice, b_jid, "hello bob, secretly")
        assert phone_dev in key_recipients(first)
        first.send()
        got = await next_encrypted(phone)
        plain, sender = await phone.plugin["xep_0384"].decrypt_message(got)
        assert plain["body"] == "hello bob, secretly"
        assert (sender.bare_jid, sender.device_id) == (a_jid, alice_dev)

        # A new device of Bob's: it adds itself to his device list, and the update
        # reaches Alice (and his phone) through PEP.
        laptop, laptop_sm = await omemo_client(server, b_jid + "/laptop", b_pw)
        laptop_dev = await own_device_id(laptop_sm)
        assert laptop_dev != phone_dev
        await until_async(lambda: alice_knows(laptop_dev), what="Alice learning Bob's laptop")

        async def phone_knows_laptop() -> bool:
            return laptop_dev in await device_ids(phone_sm, b_jid)

        await until_async(phone_knows_laptop, what="Bob's phone learning his laptop")

        second = await encrypt(alice, b_jid + "/laptop", "both of you now")
        assert {phone_dev, laptop_dev} <= key_recipients(second)
        second.send()
        got = await next_encrypted(laptop)
        plain, sender = await laptop.plugin["xep_0384"].decrypt_message(got)
        assert plain["body"] == "both of you now"
        assert (sender.bare_jid, sender.device_id) == (a_jid, alice_dev)

        # The same ciphertext, delivered to the phone too, opens there as well.
        copy_for_phone = copy.copy(second)
        copy_for_phone["to"] = JID(b_jid + "/phone")
        copy_for_phone["id"] = second["id"] + "-phone"
        copy_for_phone.send()
        got = await next_encrypted(phone)
        plain, _ = await phone.plugin["xep_0384"].decrypt_message(got)
        assert plain["body"] == "both of you now"
    finally:
        await disconnect(*(c for c in (alice, phone, laptop) if c is not None))
