"""No loss under SIGKILL: what the server acknowledged survives the process.

A sender with stream management (XEP-0198) writes a stream of messages to a
contact who is offline, asking for an ack every few stanzas; the server is killed
with SIGKILL in the middle and started again on the same data. Every message
covered by an ``<a h=…/>`` the sender received was stored offline before that
answer was written (stanzas are handled in order and ``<r/>`` is answered after
the ones before it), so the contact must get each of them after the restart,
exactly once and in order; messages past the last ack may or may not be there,
but never twice. Run on SQLite (the default) and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from typing import Any

from tests.badinput.raw import close_quietly, quiet
from tests.live import POSTGRES_URL, LiveServer, RawClient

SM = "urn:xmpp:sm:3"
TOTAL = 900  # under limits.offline_max_messages (1,000)
KILL_AFTER = 200  # acknowledged messages before the kill
ACK_EVERY = 5


async def _load(alice: RawClient, to: str, acked: list[int], kill: asyncio.Event) -> int:
    """Send up to TOTAL messages with an ack request every ACK_EVERY; the reader
    records each ``h`` and sets ``kill`` once KILL_AFTER are acknowledged. Returns
    how many were written before the connection broke."""

    async def read() -> None:
        buf = ""
        while chunk := await alice.reader.read(65536):
            buf += chunk.decode()
            for h in re.findall(r"<a xmlns='urn:xmpp:sm:3' h='(\d+)'/>", buf):
                acked.append(int(h))
                if int(h) >= KILL_AFTER:
                    kill.set()
            buf = buf[buf.rfind(">") + 1 :]

    reader = asyncio.create_task(read())
    sent = 0
    try:
        for i in range(TOTAL):
            chunk = f"<message to='{to}' type='chat' id='m{i}'><body>m{i}</body></message>"
            if (i + 1) % ACK_EVERY == 0:
                chunk += f"<r xmlns='{SM}'/>"
            alice.writer.write(chunk.encode())
            await alice.writer.drain()
            sent = i + 1
            if i % 50 == 0:
                await asyncio.sleep(0)  # let the reader see acks as they come
    except (ConnectionError, OSError):
        pass
    with contextlib.suppress(asyncio.TimeoutError, ConnectionError, OSError):
        await asyncio.wait_for(reader, 10)
    return sent


async def test_acknowledged_messages_survive_sigkill_on_sqlite(make_server: Any) -> None:
    await _kill_during_load(make_server())


async def test_acknowledged_messages_survive_sigkill_on_postgresql(
    make_server: Any, pg_schema: str
) -> None:
    await _kill_during_load(make_server(storage={"url": f"{POSTGRES_URL}?schema={pg_schema}"}))


async def _kill_during_load(server: LiveServer) -> None:
    a_jid, a_pw = await server.make_user("sender")
    b_jid, b_pw = await server.make_user("offline")
    alice = await RawClient.open(server.port)
    await alice.login(a_jid, a_pw, "load")
    await alice.send(f"<enable xmlns='{SM}'/>")
    await alice.read_until("<enabled")

    acked: list[int] = []
    kill = asyncio.Event()
    load = asyncio.create_task(_load(alice, b_jid, acked, kill))
    await asyncio.wait_for(kill.wait(), 60)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    assert server.proc.wait(10) == -signal.SIGKILL
    server.proc = None
    sent = await asyncio.wait_for(load, 30)
    alice.close()
    last_ack = max(acked)
    assert last_ack >= KILL_AFTER
    assert sent > last_ack, "the kill must land during the load, with messages in flight"

    server.start()  # same config, same data
    bob = await RawClient.open(server.port)
    await bob.login(b_jid, b_pw, "back")
    await bob.send("<presence/>")
    got: list[int] = []
    for _ in range(100):  # bounded: each round waits at most a second for more
        batch = await quiet(bob, 1.0)
        if not batch:
            break
        for el in batch:
            body = el.findtext("{jabber:client}body")
            if body is not None and re.fullmatch(r"m\d+", body):
                got.append(int(body[1:]))
    await close_quietly(bob)

    assert len(got) == len(set(got)), "a message was delivered twice"
    assert got == sorted(got), "stored messages out of order"
    missing = [i for i in range(last_ack) if i not in set(got)]
    assert missing == [], f"{len(missing)} acknowledged messages lost, first {missing[:5]}"
    assert got == list(range(len(got))), "a gap: a later message kept, an earlier one lost"
