"""Avatars: XEP-0084 ↔ XEP-0153 conversion (XEP-0398) and the hash in presence."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from tests.features.conftest import set_roster
from tests.features.test_pep import PUBSUB, events, with_caps
from tests.harness import Harness, dump, one

IMAGE = b"\x89PNG\r\n\x1a\n-not-really-a-png-" * 8
SHA1 = hashlib.sha1(IMAGE).hexdigest()
B64 = base64.b64encode(IMAGE).decode()
DATA = "urn:xmpp:avatar:data"
METADATA = "urn:xmpp:avatar:metadata"
UPDATE = "vcard-temp:x:update"
OPEN = (
    "<publish-options><x xmlns='jabber:x:data' type='submit'>"
    "<field var='FORM_TYPE' type='hidden'>"
    "<value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
    "<field var='pubsub#access_model'><value>open</value></field></x></publish-options>"
)


async def test_vcard_photo_becomes_pep_avatar_and_presence_hash_xep0398(h: Harness) -> None:
    await set_roster(h, "alice", "bob@localhost", "both")
    await set_roster(h, "bob", "alice@localhost", "both")
    alice = await h.online("alice@localhost/a")
    bob = await with_caps(h, "bob@localhost/b", [METADATA])
    bob.take()
    vcard = (
        f"<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>{B64}</BINVAL></PHOTO>"
        "</vCard>"
    )
    assert (await h.iq(alice, f"<iq type='set'>{vcard}</iq>")).get("type") == "result"
    got = events(bob)
    info = [m.find(f".//{{{METADATA}}}info") for m in got]
    assert info and info[-1] is not None and info[-1].get("id") == SHA1, dump(got)
    data = await h.iq(
        bob,
        f"<iq type='get' to='alice@localhost'><pubsub xmlns='{PUBSUB}'><items node='{DATA}'>"
        f"<item id='{SHA1}'/></items></pubsub></iq>",
    )
    assert data.findtext(f".//{{{DATA}}}data") == B64
    await h.send(alice, "<presence><show>away</show></presence>")
    pres = one(bob.take(), "presence")
    assert pres.findtext(f"{{{UPDATE}}}x/{{{UPDATE}}}photo") == SHA1


async def test_pep_avatar_becomes_vcard_photo_xep0398(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    pub = (
        f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='{DATA}'><item id='{SHA1}'>"
        f"<data xmlns='{DATA}'>{B64}</data></item></publish>{OPEN}</pubsub></iq>"
    )
    assert (await h.iq(alice, pub)).get("type") == "result"
    meta = (
        f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='{METADATA}'><item id='{SHA1}'>"
        f"<metadata xmlns='{METADATA}'><info id='{SHA1}' bytes='{len(IMAGE)}' type='image/png'/>"
        f"</metadata></item></publish>{OPEN}</pubsub></iq>"
    )
    assert (await h.iq(alice, meta)).get("type") == "result"
    bob = await h.online("bob@localhost/b")
    card = await h.iq(bob, "<iq type='get' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>")
    assert card.findtext("{vcard-temp}vCard/{vcard-temp}PHOTO/{vcard-temp}BINVAL") == B64
    assert card.findtext("{vcard-temp}vCard/{vcard-temp}PHOTO/{vcard-temp}TYPE") == "image/png"


async def test_client_photo_in_presence_is_kept_xep0153(h: Harness) -> None:
    await set_roster(h, "alice", "bob@localhost", "both")
    await set_roster(h, "bob", "alice@localhost", "both")
    alice = await h.online("alice@localhost/a")
    bob = await h.online("bob@localhost/b")
    await h.send(alice, f"<presence><x xmlns='{UPDATE}'><photo>abc</photo></x></presence>")
    pres = one(bob.take(), "presence")
    assert [p.text for p in pres.iter(f"{{{UPDATE}}}photo")] == ["abc"]
    await h.send(alice, "<presence/>")
    pres = one(bob.take(), "presence")
    assert pres.findtext(f"{{{UPDATE}}}x/{{{UPDATE}}}photo") in ("", None)


async def test_metadata_picks_the_local_image_and_checks_its_hash_xep0398_3(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    pub = (
        f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='{DATA}'><item id='{SHA1}'>"
        f"<data xmlns='{DATA}'>{B64}</data></item></publish>{OPEN}</pubsub></iq>"
    )
    assert (await h.iq(alice, pub)).get("type") == "result"

    async def metadata(infos: str) -> None:
        meta = (
            f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='{METADATA}'><item>"
            f"<metadata xmlns='{METADATA}'>{infos}</metadata></item></publish>{OPEN}</pubsub></iq>"
        )
        assert (await h.iq(alice, meta)).get("type") == "result"

    async def photo() -> str | None:
        card = await h.iq(alice, "<iq type='get'><vCard xmlns='vcard-temp'/></iq>")
        return card.findtext("{vcard-temp}vCard/{vcard-temp}PHOTO/{vcard-temp}BINVAL")

    # Data stored under an id that is not its SHA-1: not converted.
    wrong = "0" * 40
    mislabelled = pub.replace(f"id='{SHA1}'", f"id='{wrong}'")
    assert (await h.iq(alice, mislabelled)).get("type") == "result"
    await metadata(f"<info id='{wrong}' bytes='{len(IMAGE)}' type='image/png'/>")
    assert await photo() is None
    # An external URL first, the stored image second: the stored one.
    assert (await h.iq(alice, pub)).get("type") == "result"
    await metadata(
        f"<info id='{SHA1}' bytes='9' type='image/png' url='https://example.org/a.png'/>"
        f"<info id='{SHA1}' bytes='{len(IMAGE)}' type='image/png'/>"
    )
    assert await photo() == B64


async def test_pep_features_only_when_the_module_is_loaded(tmp_path: Path) -> None:
    from descant.features import DEFAULT_MODULES
    from descant.features.avatar import AvatarModule
    from descant.features.bookmarks import BookmarksModule
    from descant.features.pubsub import PEPModule

    without = [m for m in DEFAULT_MODULES if m not in (PEPModule, BookmarksModule, AvatarModule)]
    harness = await Harness.create(tmp_path, modules=without)
    try:
        alice = await harness.online("alice@localhost/a")
        disco = "http://jabber.org/protocol/disco#info"
        info = await harness.iq(
            alice, f"<iq type='get' to='alice@localhost'><query xmlns='{disco}'/></iq>"
        )
        features = {f.get("var") for f in info.iter(f"{{{disco}}}feature")}
        assert not any(f.startswith(PUBSUB) for f in features)
        idents = {(i.get("category"), i.get("type")) for i in info.iter(f"{{{disco}}}identity")}
        assert ("pubsub", "pep") not in idents
    finally:
        await harness.stop()


async def test_avatar_not_public_stays_out_of_the_vcard_xep0398_6(h: Harness) -> None:
    """A vCard is anyone's to read: an avatar only contacts may see is not put there."""
    alice = await h.online("alice@localhost/a")
    for node, payload in (
        (DATA, f"<data xmlns='{DATA}'>{B64}</data>"),
        (
            METADATA,
            f"<metadata xmlns='{METADATA}'><info id='{SHA1}' bytes='1'/></metadata>",
        ),
    ):
        pub = (
            f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='{node}'>"
            f"<item id='{SHA1}'>{payload}</item></publish></pubsub></iq>"
        )
        assert (await h.iq(alice, pub)).get("type") == "result"
    eve = await h.online("eve@localhost/e")
    card = await h.iq(eve, "<iq type='get' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>")
    assert card.find("{vcard-temp}vCard/{vcard-temp}PHOTO") is None


async def test_vcard_with_a_photo_too_large_for_pep_is_still_stored(h: Harness) -> None:
    """The conversion cannot fail the vCard the client stored (XEP-0398)."""
    alice = await h.online("alice@localhost/a")
    big = base64.b64encode(b"x" * 60_000).decode()  # beyond pubsub.max_payload once wrapped
    vcard = (
        "<vCard xmlns='vcard-temp'><FN>A</FN>"
        f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{big}</BINVAL></PHOTO></vCard>"
    )
    assert (await h.iq(alice, f"<iq type='set'>{vcard}</iq>")).get("type") == "result"
    got = await h.iq(alice, "<iq type='get'><vCard xmlns='vcard-temp'/></iq>")
    assert got.findtext("{vcard-temp}vCard/{vcard-temp}PHOTO/{vcard-temp}BINVAL") == big


async def test_vcard_saved_without_photo_keeps_a_private_pep_avatar(h: Harness) -> None:
    """A vCard-only client rewriting the vCard (its nickname, say) must not delete an
    avatar that is in PEP only because it is not public."""
    alice = await h.online("alice@localhost/a")
    for node, payload in (
        (DATA, f"<data xmlns='{DATA}'>{B64}</data>"),
        (METADATA, f"<metadata xmlns='{METADATA}'><info id='{SHA1}' bytes='1'/></metadata>"),
    ):
        pub = (
            f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='{node}'>"
            f"<item id='{SHA1}'>{payload}</item></publish></pubsub></iq>"
        )
        assert (await h.iq(alice, pub)).get("type") == "result"
    h.module("avatar").hashes.clear()  # type: ignore[attr-defined]  # as at a later login
    vcard = "<vCard xmlns='vcard-temp'><NICKNAME>al</NICKNAME></vCard>"
    assert (await h.iq(alice, f"<iq type='set'>{vcard}</iq>")).get("type") == "result"
    got = await h.iq(
        alice,
        f"<iq type='get'><pubsub xmlns='{PUBSUB}'><items node='{METADATA}'/></pubsub></iq>",
    )
    assert got.find(f".//{{{METADATA}}}info") is not None


async def test_presence_hash_follows_a_vcard_photo_too_large_for_pep(h: Harness) -> None:
    await set_roster(h, "alice", "bob@localhost", "both")
    await set_roster(h, "bob", "alice@localhost", "both")
    alice = await h.online("alice@localhost/a")
    bob = await h.online("bob@localhost/b")
    image = b"y" * 60_000
    vcard = (
        "<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE>"
        f"<BINVAL>{base64.b64encode(image).decode()}</BINVAL></PHOTO></vCard>"
    )
    assert (await h.iq(alice, f"<iq type='set'>{vcard}</iq>")).get("type") == "result"
    bob.take()
    await h.send(alice, "<presence/>")
    pres = one(bob.take(), "presence")
    assert pres.findtext(f"{{{UPDATE}}}x/{{{UPDATE}}}photo") == hashlib.sha1(image).hexdigest()


async def test_hash_of_an_offline_user_is_not_kept(h: Harness) -> None:
    """The table of avatar hashes holds online users only: a lookup for a user with no
    session (or whose last session ended while storage was read) leaves nothing."""
    await h.account("ghost")
    avatar = h.module("avatar")
    assert await avatar.hash_of("ghost") == ""  # type: ignore[attr-defined]
    assert "ghost" not in avatar.hashes  # type: ignore[attr-defined]
