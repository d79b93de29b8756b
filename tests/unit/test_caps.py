"""Entity capabilities (XEP-0115): verification strings, hashes, parsing presence."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from descant.features.caps import CAPS, Caps, IllFormed, caps_of, ver_hash, verification_string

DISCO = "http://jabber.org/protocol/disco#info"

# §5.2 simple generation example.
SIMPLE = f"""<query xmlns='{DISCO}'>
  <identity category='client' type='pc' name='Exodus 0.9.1'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <feature var='http://jabber.org/protocol/caps'/>
</query>"""
SIMPLE_S = (
    "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<"
    "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<"
    "http://jabber.org/protocol/muc<"
)

# §5.3 complex generation example: identities in two languages, an extended-info form.
COMPLEX = f"""<query xmlns='{DISCO}' node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
  <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
  <identity xml:lang='el' category='client' name='&#936; 0.11' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <x xmlns='jabber:x:data' type='result'>
    <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
    <field var='ip_version'><value>ipv6</value><value>ipv4</value></field>
    <field var='os'><value>Mac</value></field>
    <field var='os_version'><value>10.5.1</value></field>
    <field var='software'><value>Psi</value></field>
    <field var='software_version'><value>0.11</value></field>
  </x>
</query>"""
COMPLEX_S = (
    "client/pc/el/\u03a8 0.11<client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<"
    "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<"
    "http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<"
    "ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<"
)


def q(xml: str) -> ET.Element:
    return ET.fromstring(xml)


def test_simple_example_xep0115_5_2() -> None:
    assert verification_string(q(SIMPLE)) == SIMPLE_S
    assert ver_hash(q(SIMPLE), "sha-1") == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_complex_example_with_extended_form_xep0115_5_3() -> None:
    # Identities sorted by lang (el before en); field values sorted (ipv4 before ipv6).
    assert verification_string(q(COMPLEX)) == COMPLEX_S
    assert ver_hash(q(COMPLEX), "sha-1") == "q07IKJEyjvHSyhy//CH0CxmKi8w="


def test_other_iana_algorithms_xep0115_5_1_step_9() -> None:
    # openssl dgst -binary -sha256 | openssl enc -base64 of SIMPLE_S
    assert ver_hash(q(SIMPLE), "sha-256") == "Wr6IGEKhx6b9627gBmi/cCmpxXBc/GYq5zWuYfWGWoc="
    for algo in ("sha-224", "sha-384", "sha-512"):
        assert ver_hash(q(SIMPLE), algo) not in (None, "QgayPKawpkPSDYmwT/WM94uAlu0=")


def test_unknown_algorithm_gives_none_xep0115_5_4_step_2() -> None:
    assert ver_hash(q(SIMPLE), "md5") is None
    assert ver_hash(q(SIMPLE), "sha1") is None  # the hashlib name is not the IANA one
    assert ver_hash(q(SIMPLE), "") is None


def test_duplicate_feature_is_ill_formed_xep0115_5_4_step_3_4() -> None:
    dup = SIMPLE.replace("</query>", "<feature var='http://jabber.org/protocol/muc'/></query>")
    with pytest.raises(IllFormed):
        verification_string(q(dup))
    assert ver_hash(q(dup), "sha-1") is None


def test_duplicate_identity_is_ill_formed_xep0115_5_4_step_3_3() -> None:
    dup = SIMPLE.replace(
        "</query>", "<identity category='client' type='pc' name='Exodus 0.9.1'/></query>"
    )
    with pytest.raises(IllFormed):
        verification_string(q(dup))
    assert ver_hash(q(dup), "sha-1") is None


def test_same_identity_in_two_languages_is_not_a_duplicate() -> None:
    # Same category/type/name, different xml:lang: two identities (§5.3 has one such pair).
    two = COMPLEX.replace("name='&#936; 0.11'", "name='Psi 0.11'")
    assert verification_string(q(two)).startswith("client/pc/el/Psi 0.11<client/pc/en/Psi 0.11<")


def test_two_forms_with_one_form_type_are_ill_formed_xep0115_5_4_step_3_5() -> None:
    form = COMPLEX[COMPLEX.index("<x ") : COMPLEX.index("</x>") + 4]
    with pytest.raises(IllFormed):
        verification_string(q(COMPLEX.replace("</query>", form + "</query>")))


def test_form_type_with_two_different_values_is_ill_formed_xep0115_5_4_step_3_5() -> None:
    bad = COMPLEX.replace(
        "<value>urn:xmpp:dataforms:softwareinfo</value>",
        "<value>urn:xmpp:dataforms:softwareinfo</value><value>urn:other</value>",
    )
    with pytest.raises(IllFormed):
        verification_string(q(bad))
    assert ver_hash(q(bad), "sha-1") is None
    same = COMPLEX.replace(
        "<value>urn:xmpp:dataforms:softwareinfo</value>",
        "<value>urn:xmpp:dataforms:softwareinfo</value>" * 2,
    )
    assert verification_string(q(same)) == COMPLEX_S  # the same value twice is allowed


def test_form_type_without_value_is_ill_formed() -> None:
    bad = COMPLEX.replace("<value>urn:xmpp:dataforms:softwareinfo</value>", "")
    with pytest.raises(IllFormed):
        verification_string(q(bad))


def test_form_without_hidden_form_type_is_ignored_xep0115_5_4_step_3_6() -> None:
    no_type = COMPLEX.replace(
        "<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value>"
        "</field>",
        "",
    )
    not_hidden = COMPLEX.replace("var='FORM_TYPE' type='hidden'", "var='FORM_TYPE'")
    without_form = COMPLEX[: COMPLEX.index("<x ")] + "</query>"
    expected = verification_string(q(without_form))
    assert expected == COMPLEX_S[: COMPLEX_S.index("urn:xmpp:dataforms")]
    assert verification_string(q(no_type)) == expected
    assert verification_string(q(not_hidden)) == expected
    # So an entity that hashed the form in anyway does not verify.
    assert ver_hash(q(no_type), "sha-1") != "q07IKJEyjvHSyhy//CH0CxmKi8w="


def test_forms_are_sorted_by_form_type_xep0115_5_1_step_6() -> None:
    form_b = (
        "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>"
        "<value>urn:b</value></field><field var='f'><value>1</value></field></x>"
    )
    form_a = form_b.replace("urn:b", "urn:a").replace("var='f'", "var='g'")
    query = f"<query xmlns='{DISCO}'><feature var='x'/>{form_b}{form_a}</query>"
    assert verification_string(q(query)) == "x<urn:a<g<1<urn:b<f<1<"


def test_a_feature_containing_the_separator_is_ill_formed() -> None:
    # "a<b" would hash like the two features "a" and "b": refused, not verified.
    with pytest.raises(IllFormed):
        verification_string(q(f"<query xmlns='{DISCO}'><feature var='a&lt;b'/></query>"))


def test_an_identity_that_could_swallow_a_feature_is_ill_formed() -> None:
    # category 'http:', no type, lang 'jabber.org', name 'protocol/muc' would read as the
    # feature http://jabber.org/protocol/muc in S.
    ident = "<identity category='http:' type='' xml:lang='jabber.org' name='protocol/muc'/>"
    with pytest.raises(IllFormed):
        verification_string(q(f"<query xmlns='{DISCO}'>{ident}</query>"))


def test_caps_of_presence_xep0115_4() -> None:
    presence = ET.fromstring(
        f"<presence><c xmlns='{CAPS}' hash='sha-1' node='http://code.google.com/p/exodus'"
        " ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>"
    )
    assert caps_of(presence) == Caps(
        "http://code.google.com/p/exodus", "QgayPKawpkPSDYmwT/WM94uAlu0=", "sha-1"
    )


def test_caps_of_legacy_presence_has_no_hash_xep0115_6() -> None:
    presence = ET.fromstring(
        f"<presence><c xmlns='{CAPS}' node='http://exodus.jabberstudio.org/caps' ver='0.9'"
        " ext='xhtml'/></presence>"
    )
    assert caps_of(presence) == Caps("http://exodus.jabberstudio.org/caps", "0.9", "")


def test_caps_of_without_caps_or_with_missing_attributes() -> None:
    assert caps_of(ET.fromstring("<presence/>")) is None
    assert (
        caps_of(ET.fromstring("<presence><c xmlns='urn:other' node='n' ver='v'/></presence>"))
        is None
    )
    assert caps_of(ET.fromstring(f"<presence><c xmlns='{CAPS}' node='n'/></presence>")) is None
    assert caps_of(ET.fromstring(f"<presence><c xmlns='{CAPS}' ver='v'/></presence>")) is None
