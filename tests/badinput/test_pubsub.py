"""Bad publish-subscribe requests as raw XML (XEP-0060, XEP-0163, XEP-0049): each gets
its defined error, the stream stays open, and nothing stored changes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.badinput.raw import close_quietly, login, next_stanza, ping, stanza_error
from tests.live import LiveServer, RawClient

PUBSUB = "http://jabber.org/protocol/pubsub"
OWNER = PUBSUB + "#owner"
ERRORS = PUBSUB + "#errors"
CLIENT = "jabber:client"


async def answer(c: RawClient, iq: str) -> ET.Element:
    """Send an iq with id 'q' and return the server's answer to it."""
    await c.send(iq.replace("<iq ", "<iq id='q' ", 1))
    while True:
        el = await next_stanza(c)
        if el.tag == f"{{{CLIENT}}}iq" and el.get("id") == "q":
            return el


def app_error(el: ET.Element) -> str | None:
    err = el.find(f"{{{CLIENT}}}error")
    for child in err if err is not None else ():
        if child.tag.startswith(f"{{{ERRORS}}}"):
            return child.tag.rpartition("}")[2]
    return None


def publish(node: str, payload: str = "<x xmlns='urn:x'/>", options: str = "") -> str:
    return (
        f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='1'>"
        f"{payload}</item></publish>{options}</pubsub></iq>"
    )


def form(form_type: str, **fields: str) -> str:
    out = (
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
        f"<value>{PUBSUB}#{form_type}</value></field>"
    )
    out += "".join(f"<field var='pubsub#{k}'><value>{v}</value></field>" for k, v in fields.items())
    return out + "</x>"


async def items(c: RawClient, node: str) -> ET.Element:
    return await answer(
        c, f"<iq type='get'><pubsub xmlns='{PUBSUB}'><items node='{node}'/></pubsub></iq>"
    )


@pytest.mark.parametrize(
    ("request_xml", "condition", "app"),
    [
        (f"<iq type='set'><pubsub xmlns='{PUBSUB}'/></iq>", "bad-request", None),
        (
            f"<iq type='set'><pubsub xmlns='{PUBSUB}'><frobnicate node='n'/></pubsub></iq>",
            "feature-not-implemented",
            None,
        ),
        (
            f"<iq type='get'><pubsub xmlns='{PUBSUB}'>"
            "<items node='n' max_items='x'/></pubsub></iq>",
            "bad-request",
            None,
        ),
        (
            f"<iq type='get'><pubsub xmlns='{PUBSUB}'>"
            "<items node='n' max_items='-1'/></pubsub></iq>",
            "bad-request",
            None,
        ),
        (
            f"<iq type='set'><pubsub xmlns='{PUBSUB}'><subscribe node='n' jid='@@'/></pubsub></iq>",
            "bad-request",
            "invalid-jid",
        ),
        (
            f"<iq type='set'><pubsub xmlns='{PUBSUB}'><retract node='n'/></pubsub></iq>",
            "bad-request",
            "item-required",
        ),
        (publish("n", "<a xmlns='urn:x'/><b xmlns='urn:x'/>"), "bad-request", "invalid-payload"),
        (
            publish("n", f"<a xmlns='urn:x'>{'z' * 70_000}</a>"),
            "not-acceptable",
            "payload-too-big",
        ),
        (
            publish(
                "n",
                options=f"<publish-options>{form('publish-options', max_items='lots')}"
                "</publish-options>",
            ),
            "conflict",
            "precondition-not-met",
        ),
        (
            publish(
                "n",
                options=f"<publish-options>{form('publish-options', frobnicate='1')}"
                "</publish-options>",
            ),
            "conflict",
            "precondition-not-met",
        ),
        (
            publish(
                "n",
                options=f"<publish-options>{form('node_config', access_model='x')}"
                "</publish-options>",
            ),
            "bad-request",
            None,
        ),
        (
            f"<iq type='set'><pubsub xmlns='{OWNER}'><affiliations node='n'>"
            "<affiliation jid='a@@b' affiliation='member'/></affiliations></pubsub></iq>",
            "item-not-found",
            None,
        ),
    ],
)
async def test_bad_request_gets_its_error_and_stores_nothing(
    server: LiveServer, request_xml: str, condition: str, app: str | None
) -> None:
    c, _ = await login(server, "psbad")
    reply = await answer(c, request_xml)
    assert reply.get("type") == "error", ET.tostring(reply)
    assert stanza_error(reply) == condition
    assert app_error(reply) == app
    assert stanza_error(await items(c, "n")) == "item-not-found"  # no node was made
    await ping(c)
    await close_quietly(c)


async def test_bad_affiliations_change_nothing(server: LiveServer) -> None:
    """A malformed JID in an owner's affiliation list: <jid-malformed/>, none applied."""
    c, jid = await login(server, "psaff")
    assert (await answer(c, publish("n"))).get("type") == "result"
    reply = await answer(
        c,
        f"<iq type='set'><pubsub xmlns='{OWNER}'><affiliations node='n'>"
        "<affiliation jid='friend@localhost' affiliation='member'/>"
        "<affiliation jid='a@@b' affiliation='member'/></affiliations></pubsub></iq>",
    )
    assert stanza_error(reply) == "jid-malformed"
    listed = await answer(
        c, f"<iq type='get'><pubsub xmlns='{OWNER}'><affiliations node='n'/></pubsub></iq>"
    )
    jids = [a.get("jid") for a in listed.iter(f"{{{OWNER}}}affiliation")]
    assert jids == [jid.partition("/")[0]]
    await close_quietly(c)


async def test_pep_node_limit_is_resource_constraint(make_server: object) -> None:
    srv: LiveServer = make_server(pubsub={"max_nodes": 2})  # type: ignore[operator]
    c, _ = await login(srv, "pslim")
    for node in ("a", "b"):
        assert (await answer(c, publish(node))).get("type") == "result"
    reply = await answer(c, publish("c"))
    assert stanza_error(reply) == "resource-constraint"
    assert (await answer(c, publish("a"))).get("type") == "result"  # existing nodes still work
    await close_quietly(c)


async def test_private_storage_of_another_account_is_forbidden(server: LiveServer) -> None:
    c, _ = await login(server, "pspriv")
    other, _ = await server.make_user("psother")
    reply = await answer(
        c,
        f"<iq type='get' to='{other}'><query xmlns='jabber:iq:private'><p xmlns='urn:p'/>"
        "</query></iq>",
    )
    assert stanza_error(reply) == "forbidden"
    await close_quietly(c)
