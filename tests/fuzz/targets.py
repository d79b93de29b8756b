"""Fuzz targets: functions of one input (bytes) that raise on a finding.

Each target is plain Python, so an input can be replayed without the fuzzer
(tests/fuzz/test_fuzz.py replays the whole seed corpus), and `python -m
tests.fuzz.run TARGET` runs it under atheris, coverage-guided.

- ``parser``: the restricted streaming parser through the sans-I/O stream
  (stream/protocol.py), TCP or WebSocket framing, the bytes split anywhere. Only
  events or the stream's own fault; the same outcome however the bytes are split;
  every element delivered serializes to XML that reads back as the same element.
- ``jid``: RFC 7622 preparation. Only InvalidJID; what is accepted re-parses to
  itself (idempotent), part by part too.
- ``sasl``: every mechanism, with and without channel binding, given arbitrary
  client messages (or a well-formed SCRAM first message, then arbitrary ones).
  Only challenges, success with a real password, or RFC 6120 §6.5 failures.
- ``c2s_negotiation``: a client stream from its first byte (STARTTLS required,
  then SASL, binding and whatever follows); chunks split at NUL bytes, each fed
  once the server handled the last. See tests/fuzz/c2s.py for what is checked.
- ``c2s_session``: a logged-in, bound client sends stanzas built from the input
  (a small grammar of kinds, addresses and payloads for every module: roster,
  presence, PEP and pubsub, MUC, blocking, vCard, private storage, push, stream
  management, CSI…), raw bytes in between.
"""

from __future__ import annotations

import asyncio
import base64
import xml.etree.ElementTree as ET
from collections.abc import Callable
from xml.sax.saxutils import escape, quoteattr

import scramp

from descant.c2s.sasl import Challenge, Failure, PlainAuth, ScramAuth, Step, Success
from descant.errors import StreamError
from descant.jid import InvalidJID, parse, prep_domain, prep_local, prep_resource
from descant.storage import AccountStore, open_storage
from descant.stream.protocol import TCP, WEBSOCKET, StreamFault, XMLStream
from descant.xml.parser import parse_element
from descant.xml.serialize import serialize
from tests.fuzz import c2s

_loop: asyncio.AbstractEventLoop | None = None


def _run(coro: object) -> object:
    """One event loop for the whole process; each input runs to completion on it."""
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
    return _loop.run_until_complete(coro)  # type: ignore[arg-type]


class Input:
    """Reads structure out of fuzz bytes; past the end, every read gives zeros."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def __bool__(self) -> bool:
        return self.pos < len(self.data)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def pick(self, options: list[str] | tuple[str, ...]) -> str:
        return options[self.byte() % len(options)]

    def chunk(self, limit: int = 64) -> bytes:
        """A length-prefixed piece of the input."""
        n = self.byte() % (limit + 1)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out


# -- parser ---------------------------------------------------------------------------------------

HEADER = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
    b"to='localhost' version='1.0'>"
)


def _stream_events(
    framing: str, pieces: list[bytes], size: int
) -> tuple[list[object], StreamError | None]:
    stream = XMLStream("jabber:client", size, framing)
    events: list[object] = []
    for piece in pieces:
        stream.receive_data(piece)
        while (ev := stream.next_event()) is not None:
            if isinstance(ev, StreamFault):
                return events, ev.error
            events.append(ev)
    return events, None


def _shape(ev: object) -> object:
    if isinstance(ev, ET.Element):
        return ("element", serialize(ev))
    return (type(ev).__name__, repr(ev))


def parser(data: bytes) -> None:
    inp = Input(data)
    framing = TCP if inp.byte() % 4 else WEBSOCKET
    size = (256, 4096, 262144)[inp.byte() % 3]
    body = inp.rest()
    if framing == TCP:
        cuts = sorted({b % (len(body) + 1) for b in body[:8]})
        whole = [HEADER + body]
        split = [HEADER] + [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        events, error = _stream_events(TCP, whole, size)
        events2, error2 = _stream_events(TCP, split, size)
        # RFC 6120 §4: how bytes are split in transit changes nothing.
        if [_shape(e) for e in events] != [_shape(e) for e in events2]:
            raise AssertionError(f"events depend on the split at {cuts}")
        # Refused either way; which fault is named first may differ when there are
        # several (expat reports buffered text later than a bad token).
        if (error is None) != (error2 is None):
            raise AssertionError(f"errors depend on the split at {cuts}: {error} / {error2}")
    else:
        events, _ = _stream_events(WEBSOCKET, body.split(b"\0"), size)
    for ev in events:
        if isinstance(ev, ET.Element):
            text = serialize(ev)
            again = parse_element(text)
            if serialize(again) != text:
                raise AssertionError(f"serialized element reads back differently: {text!r}")


# -- JIDs -----------------------------------------------------------------------------------------


def jid(data: bytes) -> None:
    s = data.decode("utf-8", "replace")
    for prep in (prep_local, prep_resource, prep_domain):
        try:
            once = prep(s)
        except InvalidJID:
            continue
        assert prep(once) == once, (prep.__name__, s, once)
    try:
        j = parse(s)
    except InvalidJID:
        return
    again = parse(str(j))
    assert again == j and str(again) == str(j), (s, j, again)
    assert parse(str(j.bare)) == j.bare, (s, j)
    for part in j:
        assert len(part.encode()) <= 1023, (s, j)


# -- SASL -----------------------------------------------------------------------------------------

SASL_MECHS = (
    "PLAIN",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256-PLUS",
)
SASL_CONDITIONS = {"malformed-request", "incorrect-encoding", "not-authorized", "invalid-authzid"}
_store: AccountStore | None = None


async def _accounts() -> AccountStore:
    global _store
    if _store is None:
        storage = open_storage("memory://", "/tmp")
        await storage.open()
        for account in c2s._accounts():
            await storage.accounts.create(account)
        _store = storage.accounts
    return _store


def _check_step(step: Step, password_sent: bool) -> None:
    if isinstance(step, Failure):
        assert step.condition in SASL_CONDITIONS, step
    elif isinstance(step, Success):
        assert password_sent, f"success without the password: {step}"
    else:
        assert isinstance(step, Challenge), step


async def _sasl(data: bytes) -> None:
    inp = Input(data)
    mech = inp.pick(SASL_MECHS)
    tls = bool(inp.byte() & 1)
    first = inp.byte() % 4
    accounts = await _accounts()
    binding = ("tls-server-end-point", bytes(range(32)))
    cb = binding if tls else None
    auth = (
        PlainAuth("localhost", accounts)
        if mech == "PLAIN"
        else ScramAuth(mech, "localhost", accounts, cb)
    )
    messages = []
    if first == 0 and mech != "PLAIN":
        # A well-formed first message from a real client, so the fuzz reaches the final one.
        user = inp.pick((*c2s.USERS, "nobody"))
        client_cb = binding if tls or mech.endswith("PLUS") else None
        client = scramp.ScramClient([mech], user, "x", channel_binding=client_cb)
        messages.append(client.get_client_first().encode())
    while inp:
        messages.append(inp.chunk(200))
    initial = messages.pop(0) if messages and first != 1 else None
    step = await auth.start(initial)
    last = initial or b""
    while True:
        # Only PLAIN with the password can succeed: a SCRAM proof cannot be guessed.
        _check_step(step, mech == "PLAIN" and c2s.PASSWORD.encode() in last)
        if not isinstance(step, Challenge) or not messages:
            return
        last = messages.pop(0)
        step = await auth.step(last)


def sasl(data: bytes) -> None:
    _run(_sasl(data))


# -- client streams -------------------------------------------------------------------------------


def c2s_negotiation(data: bytes) -> None:
    _run(c2s.drive(data.split(b"\0"), require_tls=True))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SESSION_PRELUDE = [
    HEADER,
    f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
    f"{_b64(chr(0) + 'alice' + chr(0) + c2s.PASSWORD)}</auth>".encode(),
    HEADER,
    b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    b"<resource>fuzz</resource></bind></iq>",
]

ADDRESSES = (
    "",
    "localhost",
    "alice@localhost",
    "alice@localhost/fuzz",
    "alice@localhost/other",
    "bob@localhost",
    "bob@localhost/pc",
    "carol@localhost",
    "nobody@localhost",
    "example.org",
    "dave@example.org/r",
    "conference.localhost",
    "room@conference.localhost",
    "room@conference.localhost/nick",
    "room@conference.localhost/other",
    "pubsub.localhost",
    "remote.example",
    "user@remote.example/r",
    "BOB@LOCALHOST",
    "a@b@c",
    "@localhost",
    "localhost/res",
)
TOKENS = ("", "0", "1", "-1", "max", "x", "true", "false", "urn:xmpp:x", "\u00e9\u212a", "a" * 300)
NODES = ("n", "urn:xmpp:avatar:data", "urn:xmpp:avatar:metadata", "urn:xmpp:bookmarks:1", "")

# Payloads with holes: {j} an address, {t} a token or input text, {n} a node name.
IQ_PAYLOADS = (
    "<query xmlns='jabber:iq:roster'/>",
    "<query xmlns='jabber:iq:roster' ver='{t}'/>",
    "<query xmlns='jabber:iq:roster'><item jid='{j}' name='{t}'><group>{t}</group></item></query>",
    "<query xmlns='jabber:iq:roster'><item jid='{j}' subscription='remove'/></query>",
    "<query xmlns='jabber:iq:roster'><item jid='{j}' subscription='{t}'/><item jid='{j}'/></query>",
    "<query xmlns='http://jabber.org/protocol/disco#info' node='{t}'/>",
    "<query xmlns='http://jabber.org/protocol/disco#items' node='{t}'/>",
    "<query xmlns='http://jabber.org/protocol/disco#items'>"
    "<set xmlns='http://jabber.org/protocol/rsm'><max>{t}</max><after>{t}</after></set></query>",
    "<vCard xmlns='vcard-temp'/>",
    "<vCard xmlns='vcard-temp'><FN>{t}</FN><PHOTO><TYPE>image/png</TYPE>"
    "<BINVAL>{t}</BINVAL></PHOTO></vCard>",
    "<blocklist xmlns='urn:xmpp:blocking'/>",
    "<block xmlns='urn:xmpp:blocking'><item jid='{j}'/></block>",
    "<unblock xmlns='urn:xmpp:blocking'><item jid='{j}'/></unblock>",
    "<unblock xmlns='urn:xmpp:blocking'/>",
    "<enable xmlns='urn:xmpp:carbons:2'/>",
    "<disable xmlns='urn:xmpp:carbons:2'/>",
    "<ping xmlns='urn:xmpp:ping'/>",
    "<query xmlns='jabber:iq:version'/>",
    "<query xmlns='jabber:iq:private'><x xmlns='urn:x:{t}'>{t}</x></query>",
    "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>"
    "<conference jid='{j}' autojoin='{t}' name='{t}'><nick>{t}</nick></conference>"
    "</storage></query>",
    "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>",
    "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{t}</resource></bind>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='{n}'/></pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='{n}'/><configure><x "
    "xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>"
    "http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#{t}'>"
    "<value>{t}</value></field></x></configure></pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{n}'><item id='{t}'>"
    "<entry xmlns='urn:x'>{t}</entry></item></publish></pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{n}'><item>"
    "<data xmlns='urn:xmpp:avatar:data'>{t}</data></item></publish><publish-options><x "
    "xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>"
    "http://jabber.org/protocol/pubsub#publish-options</value></field>"
    "<field var='pubsub#access_model'><value>{t}</value></field></x></publish-options></pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{n}' max_items='{t}'/>"
    "</pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{n}'><item id='{t}'/>"
    "</items></pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='{n}' notify='{t}'>"
    "<item id='{t}'/></retract></pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='{n}' jid='{j}'/></pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub'><unsubscribe node='{n}' jid='{j}'/>"
    "</pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscriptions node='{n}'/></pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub'><affiliations/></pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='{n}'/></pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='{n}'><x "
    "xmlns='jabber:x:data' type='{t}'><field var='pubsub#{t}'><value>{t}</value></field>"
    "</x></configure></pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><default/></pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='{n}'/></pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><purge node='{n}'/></pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><affiliations node='{n}'>"
    "<affiliation jid='{j}' affiliation='{t}'/></affiliations></pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><subscriptions node='{n}'>"
    "<subscription jid='{j}' subscription='{t}'/></subscriptions></pubsub>",
    "<query xmlns='http://jabber.org/protocol/muc#owner'/>",
    "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>"
    "<field var='muc#roomconfig_{t}'><value>{t}</value></field></x></query>",
    "<query xmlns='http://jabber.org/protocol/muc#owner'><destroy jid='{j}'><reason>{t}</reason>"
    "</destroy></query>",
    "<query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='{t}'/></query>",
    "<query xmlns='http://jabber.org/protocol/muc#admin'><item nick='{t}' role='{t}'/></query>",
    "<query xmlns='http://jabber.org/protocol/muc#admin'><item jid='{j}' affiliation='{t}'/>"
    "</query>",
    "<query xmlns='urn:xmpp:mam:2' queryid='{t}'><set xmlns='http://jabber.org/protocol/rsm'>"
    "<max>{t}</max><before>{t}</before></set></query>",
    "<enable xmlns='urn:xmpp:push:0' jid='{j}' node='{t}'/>",
    "<disable xmlns='urn:xmpp:push:0' jid='{j}' node='{t}'/>",
    "<query xmlns='jabber:iq:last'/>",
    "<time xmlns='urn:xmpp:time'/>",
    "<x xmlns='urn:x:{t}'/>",
    "",
    "<a xmlns='urn:a'/><b xmlns='urn:b'/>",
)
MESSAGE_PAYLOADS = (
    "<body>{t}</body>",
    "<body>{t}</body><request xmlns='urn:xmpp:receipts'/><active "
    "xmlns='http://jabber.org/protocol/chatstates'/>",
    "<composing xmlns='http://jabber.org/protocol/chatstates'/>",
    "<subject>{t}</subject>",
    "<x xmlns='http://jabber.org/protocol/muc#user'><invite to='{j}'><reason>{t}</reason>"
    "</invite></x>",
    "<x xmlns='http://jabber.org/protocol/muc#user'><decline to='{j}'/></x>",
    "<x xmlns='jabber:x:conference' jid='{j}' reason='{t}'/>",
    "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>"
    "http://jabber.org/protocol/muc#request</value></field><field var='muc#role'>"
    "<value>{t}</value></field></x>",
    "<private xmlns='urn:xmpp:carbons:2'/><body>{t}</body>",
    "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='{n}'/></event>",
    "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
    "<stanza-id xmlns='urn:xmpp:sid:0' id='{t}' by='{j}'/><body>{t}</body>",
)
PRESENCE_PAYLOADS = (
    "",
    "<priority>{t}</priority><show>{t}</show><status>{t}</status>",
    "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{t}' ver='{t}'/>",
    "<x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='{t}' since='{t}'/>"
    "<password>{t}</password></x>",
    "<x xmlns='http://jabber.org/protocol/muc'/>",
    "<x xmlns='vcard-temp:x:update'><photo>{t}</photo></x>",
    "<nick xmlns='http://jabber.org/protocol/nick'>{t}</nick>",
)
NONZAS = (
    "<enable xmlns='urn:xmpp:sm:3' resume='{t}' max='{t}'/>",
    "<r xmlns='urn:xmpp:sm:3'/>",
    "<a xmlns='urn:xmpp:sm:3' h='{t}'/>",
    "<resume xmlns='urn:xmpp:sm:3' previd='{t}' h='{t}'/>",
    "<inactive xmlns='urn:xmpp:csi:0'/>",
    "<active xmlns='urn:xmpp:csi:0'/>",
)
MESSAGE_TYPES = ("", "chat", "normal", "groupchat", "headline", "error", "x")
PRESENCE_TYPES = (
    "",
    "unavailable",
    "subscribe",
    "subscribed",
    "unsubscribe",
    "unsubscribed",
    "probe",
    "error",
    "x",
)
IQ_TYPES = ("get", "set", "get", "set", "result", "error", "")


def _fill(template: str, inp: Input) -> str:
    def token() -> str:
        b = inp.byte()
        if b < 200:
            return TOKENS[b % len(TOKENS)]
        # Text from the input, without the characters XML cannot carry (the raw
        # pieces below send those): a stanza that parses reaches the handlers.
        text = inp.chunk(32).decode("utf-8", "replace")
        return "".join(c for c in text if c >= " " or c in "\t\n\r")

    out = []
    for i, piece in enumerate(template.split("{")):
        if i == 0:
            out.append(piece)
            continue
        hole, _, tail = piece.partition("}")
        if hole == "j":
            value = inp.pick(ADDRESSES)
        elif hole == "n":
            value = inp.pick(NODES)
        else:
            value = token()
        out.append(escape(value, {"'": "&apos;", '"': "&quot;"}))
        out.append(tail)
    return "".join(out)


def _attrs(inp: Input, type_: str, with_id: str | None) -> str:
    to = inp.pick(ADDRESSES)
    parts = []
    if to:
        parts.append(f" to={quoteattr(to)}")
    if type_:
        parts.append(f" type={quoteattr(type_)}")
    if with_id:
        parts.append(f" id={quoteattr(with_id)}")
    return "".join(parts)


def session_chunks(data: bytes) -> list[bytes]:
    """What the bound client sends: stanzas from the grammar above, raw bytes, and
    pauses (a chunk ends; the next is sent once the server handled it)."""
    inp = Input(data)
    chunks: list[bytes] = []
    current: list[str] = []
    n = 0
    while inp and n < 64:
        n += 1
        op = inp.byte() % 8
        if op in (0, 1):
            type_ = inp.pick(IQ_TYPES)
            payload = _fill(inp.pick(IQ_PAYLOADS), inp)
            current.append(f"<iq{_attrs(inp, type_, f'q{n}')}>{payload}</iq>")
        elif op == 2:
            type_ = inp.pick(MESSAGE_TYPES)
            payload = _fill(inp.pick(MESSAGE_PAYLOADS), inp)
            current.append(f"<message{_attrs(inp, type_, f'm{n}')}>{payload}</message>")
        elif op == 3:
            type_ = inp.pick(PRESENCE_TYPES)
            payload = _fill(inp.pick(PRESENCE_PAYLOADS), inp)
            current.append(f"<presence{_attrs(inp, type_, f'p{n}')}>{payload}</presence>")
        elif op == 4:
            current.append(_fill(inp.pick(NONZAS), inp))
        elif op == 5:
            current.append(inp.chunk(128).decode("utf-8", "replace"))
        else:
            chunks.append("".join(current).encode())
            current = []
    chunks.append("".join(current).encode())
    return [c for c in chunks if c]


def c2s_session(data: bytes) -> None:
    _run(c2s.drive(session_chunks(data), require_tls=False, prelude=SESSION_PRELUDE))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "parser": parser,
    "jid": jid,
    "sasl": sasl,
    "c2s_negotiation": c2s_negotiation,
    "c2s_session": c2s_session,
}
