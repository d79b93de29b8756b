"""Shared set-up for the PubSub / PEP / OMEMO client tests (tests/client/test_pep.py,
tests/client/test_omemo.py).

PEP notifications depend on what the server learns from a client's presence (XEP-0115
caps with ``+notify`` features), so these clients load their plugins *before* login,
register their ``+notify`` interests once the resource is bound (slixmpp keys disco
features by the bound full JID), recompute their caps, and only then send presence.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol

import slixmpp
from slixmpp.exceptions import IqError

from tests.live import Client, LiveServer, connect_slixmpp, disconnect

PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"
TEST_NS = "urn:descant:test:pep"

_nodes = itertools.count(1)


class Server(Protocol):
    """What these tests need of a server (tests.live.LiveServer has it)."""

    port: int

    async def make_user(
        self, prefix: str = "user", domain: str = "localhost"
    ) -> tuple[str, str]: ...


def unique_node(label: str) -> str:
    """A node name no other test uses (the server process is shared by the session)."""
    return f"{TEST_NS}:{label}:{next(_nodes)}"


def note(text: str, ns: str = TEST_NS) -> ET.Element:
    """A small item payload: <note xmlns=ns>text</note>."""
    el = ET.Element(f"{{{ns}}}note")
    el.text = text
    return el


async def connect_with(
    server: Server,
    jid: str,
    password: str,
    *,
    plugins: Iterable[str] = (),
    config: dict[str, dict[str, Any]] | None = None,
    interests: Iterable[str] = (),
    caps: bool = True,
    presence: bool = True,
    roster: bool = True,
    setup: Callable[[Client], None] | None = None,
    timeout: float = 15,
) -> Client:
    """Log a slixmpp client in with ``plugins`` loaded before the stream opens.

    ``interests`` are PEP nodes the client wants notifications for: each becomes a
    ``<node>+notify`` disco feature advertised through XEP-0115 caps in its presence.
    With ``caps=False`` the client advertises no caps at all.
    """
    interests = list(interests)
    plugins = list(plugins)
    if interests or caps:
        plugins = ["xep_0115", "xep_0163", *plugins]

    def prepare(client: Client) -> None:
        for name in plugins:
            client.register_plugin(name, pconfig=(config or {}).get(name))
        if setup is not None:
            setup(client)
        if interests:
            client.add_event_handler(
                "session_bind", lambda _jid: client.plugin["xep_0163"].add_interest(interests)
            )

    async def caps_ready(client: Client) -> None:
        if "xep_0115" in client.plugin:
            # The caps hash must cover the +notify features before the first presence.
            await client.plugin["xep_0115"].update_caps(broadcast=False)

    return await connect_slixmpp(
        server,
        jid,
        password,
        presence=presence,
        roster=roster,
        timeout=timeout,
        setup=prepare,
        before_presence=caps_ready,
    )


async def until(cond: Callable[[], object], timeout: float = 5, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.05)


def subscription(client: Client, bare: str) -> str:
    roster = client.client_roster
    return str(roster[bare]["subscription"]) if bare in roster else "absent"


async def befriend(a: Client, b: Client, timeout: float = 10) -> None:
    """A mutual ('both') presence subscription between two online clients, made through
    slixmpp's default roster policy (it approves and subscribes back), then waits until
    each has seen the other's available presence (which carries the caps)."""
    a_bare, b_bare = a.boundjid.bare, b.boundjid.bare
    a.send_presence_subscription(pto=b_bare)
    await until(
        lambda: subscription(a, b_bare) == "both" and subscription(b, a_bare) == "both",
        timeout,
        f"mutual subscription {a_bare} <-> {b_bare}",
    )
    await until(
        lambda: bool(a.client_roster[b_bare].resources) and bool(b.client_roster[a_bare].resources),
        timeout,
        f"presence exchange {a_bare} <-> {b_bare}",
    )


def events(client: slixmpp.ClientXMPP, name: str) -> asyncio.Queue[Any]:
    """A queue fed by every ``name`` event the client raises from now on."""
    q: asyncio.Queue[Any] = asyncio.Queue()
    client.add_event_handler(name, q.put_nowait)
    return q


async def next_event(
    q: asyncio.Queue[Any], match: Callable[[Any], bool] = lambda _: True, timeout: float = 5
) -> Any:
    async def wait() -> Any:
        while True:
            ev = await q.get()
            if match(ev):
                return ev

    try:
        return await asyncio.wait_for(wait(), timeout)
    except TimeoutError:
        raise AssertionError(f"no matching event within {timeout} s") from None


def drained(q: asyncio.Queue[Any], match: Callable[[Any], bool] = lambda _: True) -> list[Any]:
    """Take everything queued so far; return what matches."""
    out = []
    while not q.empty():
        ev = q.get_nowait()
        if match(ev):
            out.append(ev)
    return out


def event_node(msg: slixmpp.Message) -> str:
    return str(msg["pubsub_event"]["items"]["node"])


def event_items(msg: slixmpp.Message) -> list[Any]:
    """The <item/> and <retract/> children of a pubsub event's <items/>."""
    return list(msg["pubsub_event"]["items"])


def from_node(node: str) -> Callable[[slixmpp.Message], bool]:
    return lambda msg: event_node(msg) == node


def published_ids(msg: slixmpp.Message) -> list[str]:
    return [str(i["id"]) for i in event_items(msg) if i.name == "item"]


def item_ids(iq: slixmpp.Iq) -> list[str]:
    return [str(item["id"]) for item in iq["pubsub"]["items"]]


def payload_texts(iq: slixmpp.Iq) -> dict[str, str]:
    """item id -> text of its payload."""
    out = {}
    for item in iq["pubsub"]["items"]:
        payload = item["payload"]
        out[str(item["id"])] = "" if payload is None else (payload.text or "")
    return out


def condition(exc: IqError) -> str:
    return str(exc.iq["error"]["condition"])


def pubsub_condition(exc: IqError) -> str:
    """The application-specific condition in the pubsub#errors namespace, if any."""
    err = exc.iq["error"].xml
    for child in err:
        if child.tag.startswith("{" + PUBSUB_ERRORS + "}"):
            return child.tag.split("}", 1)[1]
    return ""


def form(form_type: str, fields: dict[str, Any]) -> Any:
    """A submitted XEP-0004 form with a FORM_TYPE (publish-options or node_config)."""
    from slixmpp.plugins.xep_0004 import Form

    f = Form()
    f["type"] = "submit"
    f.add_field(var="FORM_TYPE", ftype="hidden", value=form_type)
    for var, value in fields.items():
        f.add_field(var=var, value=value)
    return f


def publish_options(**fields: Any) -> Any:
    return form(
        "http://jabber.org/protocol/pubsub#publish-options",
        {f"pubsub#{k}": v for k, v in fields.items()},
    )


def node_config(**fields: Any) -> Any:
    return form(
        "http://jabber.org/protocol/pubsub#node_config",
        {f"pubsub#{k}": v for k, v in fields.items()},
    )


def config_values(iq: slixmpp.Iq) -> dict[str, Any]:
    """var -> value of the node configuration form in a pubsub#owner configure result."""
    values: dict[str, Any] = iq["pubsub_owner"]["configure"]["form"].get_values()
    return values


@contextlib.asynccontextmanager
async def phone_and_laptop(server: LiveServer, label: str) -> AsyncIterator[Devices]:
    """A fresh account with two resources: ``phone`` publishes, ``laptop`` asks for
    notifications of a node made for the test (``+notify``)."""
    jid, password = await server.make_user("alice")
    node = unique_node(label)
    phone = await connect_with(server, jid + "/phone", password)
    laptop = await connect_with(server, jid + "/laptop", password, interests=[node])
    try:
        yield Devices(jid, node, phone, laptop)
    finally:
        await disconnect(phone, laptop)


@dataclasses.dataclass(frozen=True)
class Devices:
    jid: str
    node: str
    phone: Client
    laptop: Client
