"""XMPP addresses (RFC 7622), prepared with PRECIS (RFC 8264/8265).

Localparts use the UsernameCaseMapped profile plus the characters RFC 7622
§3.3.1 forbids; resourceparts the OpaqueString profile; domainparts are
lower-cased, NFC-normalised, label-checked (or an IP literal). Each part is at
most 1023 octets. Parsing is cached: the same strings recur on every stanza.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from functools import lru_cache
from typing import NamedTuple

import precis_i18n

_USERNAME = precis_i18n.get_profile("UsernameCaseMapped")
_OPAQUE = precis_i18n.get_profile("OpaqueString")
_LOCAL_FORBIDDEN = frozenset("\"&'/:<>@")
_MAX = 1023
_FULL_STOPS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


class InvalidJID(ValueError):
    """The string is not a valid JID (answer with <jid-malformed/>)."""


class JID(NamedTuple):
    """A prepared JID; immutable, hashable, cheap to compare.

    Build with :func:`parse` or :meth:`make`, never from unprepared parts.
    """

    local: str
    domain: str
    resource: str

    @property
    def bare(self) -> JID:
        return JID(self.local, self.domain, "") if self.resource else self

    @property
    def is_bare(self) -> bool:
        return not self.resource

    @property
    def is_domain(self) -> bool:
        return not self.local and not self.resource

    def with_resource(self, resource: str) -> JID:
        return JID(self.local, self.domain, prep_resource(resource))

    def __str__(self) -> str:
        return _format(self.local, self.domain, self.resource)

    @classmethod
    def make(cls, local: str | None, domain: str, resource: str | None = None) -> JID:
        return JID(
            prep_local(local) if local else "",
            prep_domain(domain),
            prep_resource(resource) if resource else "",
        )


def _format(local: str, domain: str, resource: str) -> str:
    s = f"{local}@{domain}" if local else domain
    return f"{s}/{resource}" if resource else s


def _check_len(part: str, what: str) -> None:
    n = len(part.encode("utf-8"))
    if n == 0:
        raise InvalidJID(f"empty {what}")
    if n > _MAX:
        raise InvalidJID(f"{what} longer than {_MAX} octets")


@lru_cache(maxsize=8192)
def prep_local(local: str) -> str:
    try:
        out: str = _USERNAME.enforce(local)
    except UnicodeError as exc:
        raise InvalidJID(f"invalid localpart: {exc}") from None
    if _LOCAL_FORBIDDEN.intersection(out):
        raise InvalidJID("localpart contains a forbidden character")
    _check_len(out, "localpart")
    return out


@lru_cache(maxsize=8192)
def prep_resource(resource: str) -> str:
    try:
        out: str = _OPAQUE.enforce(resource)
    except UnicodeError as exc:
        raise InvalidJID(f"invalid resourcepart: {exc}") from None
    _check_len(out, "resourcepart")
    return out


@lru_cache(maxsize=2048)
def prep_domain(domain: str) -> str:
    if not domain.isascii():
        # RFC 7622 §3.2 with the IDNA2008 mappings (RFC 5895): other full stops
        # separate labels too, and full-width forms fold to their usual ones.
        domain = unicodedata.normalize("NFKC", domain.translate(_FULL_STOPS))
    if domain.endswith("."):
        domain = domain[:-1]
    if domain.startswith("[") and domain.endswith("]"):
        try:
            return "[" + ipaddress.IPv6Address(domain[1:-1]).compressed + "]"
        except ValueError:
            raise InvalidJID("invalid IPv6 literal") from None
    out = unicodedata.normalize("NFC", domain.lower())
    _check_len(out, "domainpart")
    for label in out.split("."):
        try:
            # The idna codec raises UnicodeError (not InvalidJID) for labels it
            # refuses, e.g. an A-label over 63 octets or a control character.
            size = len(label.encode("idna" if not label.isascii() else "ascii"))
        except UnicodeError:
            raise InvalidJID("invalid domain label") from None
        if not label or size > 63:
            raise InvalidJID("invalid domain label")
        if label.isascii():
            if not all(c.isalnum() or c in "-_" for c in label):
                raise InvalidJID("invalid character in domainpart")
            if label[0] == "-" or label[-1] == "-":
                raise InvalidJID("domain label starts or ends with '-'")
        else:
            for c in label:
                cat = unicodedata.category(c)
                if cat[0] in "CZ" or c in "/@:<>\"'&\\ ":
                    raise InvalidJID("invalid character in domainpart")
    return out


@lru_cache(maxsize=16384)
def parse(s: str) -> JID:
    """Parse and prepare a JID string; raise InvalidJID."""
    if not s:
        raise InvalidJID("empty JID")
    rest, slash, resource = s.partition("/")
    local, at, domain = rest.rpartition("@")
    if at and not local:
        raise InvalidJID("empty localpart")
    if slash and not resource:
        raise InvalidJID("empty resourcepart")
    return JID(
        prep_local(local) if at else "",
        prep_domain(domain),
        prep_resource(resource) if slash else "",
    )


def try_parse(s: str | None) -> JID | None:
    """Parse, returning None for an absent or invalid JID."""
    if not s:
        return None
    try:
        return parse(s)
    except InvalidJID:
        return None
