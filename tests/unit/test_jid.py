"""JIDs (descant.jid): RFC 7622 addresses prepared with PRECIS (RFC 8264, RFC 8265)."""

from __future__ import annotations

import pytest

from descant.jid import JID, InvalidJID, parse, prep_domain, prep_local, prep_resource, try_parse

# -- structure (RFC 7622 §3.1) -------------------------------------------------------------------


def test_parse_full_jid_rfc7622_3_1() -> None:
    j = parse("juliet@example.com/balcony")
    assert j == JID("juliet", "example.com", "balcony")
    assert not j.is_bare
    assert not j.is_domain


def test_parse_bare_jid_rfc7622_3_1() -> None:
    j = parse("juliet@example.com")
    assert j == JID("juliet", "example.com", "")
    assert j.is_bare
    assert not j.is_domain


def test_parse_domain_jid_rfc7622_3_1() -> None:
    j = parse("example.com")
    assert j == JID("", "example.com", "")
    assert j.is_bare
    assert j.is_domain


def test_domain_with_resource_rfc7622_3_1() -> None:
    assert parse("example.com/foobar") == JID("", "example.com", "foobar")


def test_resource_is_everything_after_first_slash_rfc7622_3_1() -> None:
    assert parse("a@example.com/b/c@d/e") == JID("a", "example.com", "b/c@d/e")
    assert parse("a.example.com/b@example.net") == JID("", "a.example.com", "b@example.net")


@pytest.mark.parametrize(
    "s",
    ["", "@example.com", "juliet@", "/foobar", "juliet@example.com/", "@example.com/", "@", "/"],
)
def test_empty_parts_are_invalid_rfc7622_3_1(s: str) -> None:
    with pytest.raises(InvalidJID):
        parse(s)


def test_two_at_signs_are_invalid_rfc7622_3_3_1() -> None:
    with pytest.raises(InvalidJID):
        parse("a@b@example.com")


# -- localpart (RFC 7622 §3.3, UsernameCaseMapped) -----------------------------------------------


def test_localpart_is_case_mapped_rfc7622_3_3_2() -> None:
    assert parse("JuLiEt@example.com").local == "juliet"
    assert parse("\u03a3@example.com").local == "\u03c3"  # GREEK CAPITAL SIGMA → small sigma


def test_localpart_width_mapped_rfc8265_3_3_2() -> None:
    assert prep_local("\uff4a\uff55\uff4c\uff49\uff45\uff54") == "juliet"  # fullwidth


def test_localpart_normalized_nfc_rfc8265_3_3_2() -> None:
    assert prep_local("u\u0308ber") == "\u00fcber"


@pytest.mark.parametrize("char", ['"', "&", "'", "/", ":", "<", ">", "@"])
def test_forbidden_localpart_characters_rfc7622_3_3_1(char: str) -> None:
    with pytest.raises(InvalidJID):
        prep_local(f"a{char}b")


@pytest.mark.parametrize("local", ["foo bar", "a\tb", "\u2163", "\u265a", "a\u0000b", ""])
def test_localpart_disallowed_by_precis_rfc8265_3_3(local: str) -> None:
    with pytest.raises(InvalidJID):
        prep_local(local)


def test_localpart_1023_octet_limit_rfc7622_3_3() -> None:
    assert prep_local("a" * 1023) == "a" * 1023
    with pytest.raises(InvalidJID):
        prep_local("a" * 1024)
    # Octets, not characters: 512 two-octet characters are 1024 octets.
    assert prep_local("\u00e9" * 511) == "\u00e9" * 511
    with pytest.raises(InvalidJID):
        prep_local("\u00e9" * 512)


# -- resourcepart (RFC 7622 §3.4, OpaqueString) -------------------------------------------------


def test_resourcepart_preserves_case_rfc7622_3_4_2() -> None:
    assert parse("juliet@example.com/BalCony").resource == "BalCony"


def test_resourcepart_allows_spaces_and_symbols_rfc7622_3_4() -> None:
    assert parse("juliet@example.com/foo bar").resource == "foo bar"
    assert parse("king@example.com/\u265a").resource == "\u265a"
    assert parse("juliet@example.com/foo@bar").resource == "foo@bar"


def test_resourcepart_maps_non_ascii_space_and_nfc_rfc8265_4_2_2() -> None:
    assert prep_resource("a\u00a0b") == "a b"
    assert prep_resource("u\u0308") == "\u00fc"


@pytest.mark.parametrize("res", ["a\u0000b", "a\u0007b", "\ufffe", ""])
def test_resourcepart_disallowed_by_precis_rfc8265_4_2(res: str) -> None:
    with pytest.raises(InvalidJID):
        prep_resource(res)


def test_resourcepart_1023_octet_limit_rfc7622_3_4() -> None:
    assert len(parse("a@b/" + "r" * 1023).resource) == 1023
    with pytest.raises(InvalidJID):
        parse("a@b/" + "r" * 1024)


# -- domainpart (RFC 7622 §3.2) --------------------------------------------------------------------


def test_domain_is_lowercased_rfc7622_3_2_2() -> None:
    assert parse("Juliet@EXAMPLE.Com/Res") == JID("juliet", "example.com", "Res")


def test_trailing_dot_is_removed_rfc7622_3_2() -> None:
    assert prep_domain("example.com.") == "example.com"
    assert parse("juliet@example.com./r") == JID("juliet", "example.com", "r")


@pytest.mark.parametrize("domain", [".", "example.com..", ".example.com", "a..b"])
def test_empty_labels_are_invalid_rfc7622_3_2(domain: str) -> None:
    with pytest.raises(InvalidJID):
        prep_domain(domain)


def test_unicode_domain_is_lowercased_and_nfc_rfc7622_3_2_2() -> None:
    assert prep_domain("\u00dcBER.Example") == "\u00fcber.example"
    assert prep_domain("u\u0308ber.example") == "\u00fcber.example"
    assert prep_domain("\u00fcber.example") == "\u00fcber.example"


def test_ipv4_literal_rfc7622_3_2() -> None:
    assert parse("juliet@192.0.2.1/r") == JID("juliet", "192.0.2.1", "r")


def test_ipv6_literal_is_bracketed_and_compressed_rfc7622_3_2() -> None:
    assert prep_domain("[::1]") == "[::1]"
    assert prep_domain("[2001:DB8:0:0:0:0:0:1]") == "[2001:db8::1]"
    assert parse("juliet@[2001:db8::1]/r") == JID("juliet", "[2001:db8::1]", "r")


@pytest.mark.parametrize("domain", ["[1.2.3.4]", "[::g]", "[]", "[::1", "::1"])
def test_invalid_ip_literals_rfc7622_3_2(domain: str) -> None:
    with pytest.raises(InvalidJID):
        prep_domain(domain)


@pytest.mark.parametrize(
    "domain",
    [
        "",
        "exa mple.com",
        "exa@mple.com",
        "-example.com",
        "example-.com",
        "ex!ample.com",
        "ex/ample",
        "a" * 64 + ".com",
        "\u00fc" * 70 + ".com",  # a U-label whose A-label is longer than 63 octets
        "a\u0080b.com",  # a control character
        "exa\u200bmple.com",  # a format character
        "\u3002.com",
    ],
)
def test_invalid_domains_rfc7622_3_2(domain: str) -> None:
    with pytest.raises(InvalidJID):
        prep_domain(domain)


def test_invalid_domains_never_raise_other_errors_rfc7622_3_2() -> None:
    """try_parse must answer None, not crash, for anything a peer can send."""
    for s in ["\u00fc" * 70 + ".com", "a@" + "\u00e9" * 64, "a\u0080b.com", "x@\u3002.com"]:
        assert try_parse(s) is None


def test_domain_label_63_octet_limit_rfc1035_2_3_4() -> None:
    assert prep_domain("a" * 63 + ".com") == "a" * 63 + ".com"


def test_domainpart_1023_octet_limit_rfc7622_3_2() -> None:
    label = "a" * 63
    d1023 = ".".join([label] * 16)
    assert len(d1023) == 1023
    assert prep_domain(d1023) == d1023
    with pytest.raises(InvalidJID):
        prep_domain(d1023 + "a")


# -- helpers --------------------------------------------------------------------------------------


def test_try_parse_rfc7622() -> None:
    assert try_parse(None) is None
    assert try_parse("") is None
    assert try_parse("@example.com") is None
    assert try_parse("Juliet@Example.com/R") == JID("juliet", "example.com", "R")


def test_bare_drops_resource() -> None:
    full = parse("juliet@example.com/balcony")
    assert full.bare == JID("juliet", "example.com", "")
    bare = parse("juliet@example.com")
    assert bare.bare is bare


@pytest.mark.parametrize(
    "s",
    [
        "juliet@example.com",
        "juliet@example.com/balcony",
        "example.com",
        "example.com/foobar",
        "juliet@[::1]/r",
        "juliet@example.com/a/b@c",
    ],
)
def test_str_round_trip_rfc7622_3_1(s: str) -> None:
    j = parse(s)
    assert str(j) == s
    assert parse(str(j)) == j


def test_str_is_canonical_form() -> None:
    assert str(parse("JULIET@Example.COM./Balcony")) == "juliet@example.com/Balcony"


def test_make_prepares_parts_rfc7622_3() -> None:
    assert JID.make("Juliet", "Example.com", "R") == JID("juliet", "example.com", "R")
    assert JID.make(None, "example.com") == JID("", "example.com", "")
    with pytest.raises(InvalidJID):
        JID.make("a@b", "example.com")


def test_with_resource_prepares_resource_rfc7622_3_4() -> None:
    j = parse("juliet@example.com").with_resource("u\u0308")
    assert j == JID("juliet", "example.com", "\u00fc")
    with pytest.raises(InvalidJID):
        parse("juliet@example.com").with_resource("")


def test_jids_compare_after_preparation_rfc7622_3() -> None:
    assert parse("JULIET@EXAMPLE.COM") == parse("juliet@example.com")
    assert parse("juliet@example.com/A") != parse("juliet@example.com/a")
    assert len({parse("a@b"), parse("A@B"), parse("a@b.")}) == 1


# -- RFC 7622 §3.5 examples ------------------------------------------------------------------------

VALID_3_5 = [
    ("juliet@example.com", JID("juliet", "example.com", "")),
    ("juliet@example.com/foo", JID("juliet", "example.com", "foo")),
    ("juliet@example.com/foo bar", JID("juliet", "example.com", "foo bar")),
    ("juliet@example.com/foo@bar", JID("juliet", "example.com", "foo@bar")),
    ("foo\\20bar@example.com", JID("foo\\20bar", "example.com", "")),
    ("fussball@example.com", JID("fussball", "example.com", "")),
    ("fu\u00dfball@example.com", JID("fu\u00dfball", "example.com", "")),
    ("\u03c0@example.com", JID("\u03c0", "example.com", "")),
    ("\u03a3@example.com/foo", JID("\u03c3", "example.com", "foo")),
    ("\u03c3@example.com/foo", JID("\u03c3", "example.com", "foo")),
    ("\u03c2@example.com/foo", JID("\u03c2", "example.com", "foo")),
    ("king@example.com/\u265a", JID("king", "example.com", "\u265a")),
    ("example.com", JID("", "example.com", "")),
    ("example.com/foobar", JID("", "example.com", "foobar")),
    ("a.example.com/b@example.net", JID("", "a.example.com", "b@example.net")),
]

INVALID_3_5 = [
    '"juliet"@example.com',  # quotation marks
    "foo bar@example.com",  # space in localpart
    "@example.com/",  # empty localpart and resourcepart
    "henry\u2163@example.com",  # ROMAN NUMERAL FOUR has a compatibility decomposition
    "\u265a@example.com",  # symbol in localpart
    "juliet@",  # empty domainpart
    "/foobar",  # empty domainpart
]


@pytest.mark.parametrize(("s", "expected"), VALID_3_5)
def test_rfc7622_3_5_valid_examples(s: str, expected: JID) -> None:
    assert parse(s) == expected


@pytest.mark.parametrize("s", INVALID_3_5)
def test_rfc7622_3_5_invalid_examples(s: str) -> None:
    with pytest.raises(InvalidJID):
        parse(s)
    assert try_parse(s) is None


def test_rfc7622_3_5_leading_space_resource_is_accepted() -> None:
    """RFC 7622 §3.5 lists "juliet@example.com/ foo" as invalid, but no rule backs it:
    OpaqueString (RFC 8265 §4.2) allows spaces. Like other servers we accept it, since
    refusing an address other servers deliver to would lose messages."""
    assert parse("juliet@example.com/ foo").resource == " foo"


@pytest.mark.parametrize(
    "given", ["example\u3002com", "example\uff0ecom", "example\uff61com", "\uff45xample.com"]
)
def test_domain_full_stops_and_full_width_forms_are_mapped_rfc7622_3_2(given: str) -> None:
    """Ideographic and full-width full stops separate labels; full-width letters fold."""
    assert parse(f"juliet@{given}") == parse("juliet@example.com")
