"""Namespaces, ranks and status codes of multi-user chat (XEP-0045), in one place."""

from __future__ import annotations

MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"
MUC_ADMIN = "http://jabber.org/protocol/muc#admin"
MUC_OWNER = "http://jabber.org/protocol/muc#owner"
MUC_ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"
MUC_ROOMINFO = "http://jabber.org/protocol/muc#roominfo"
MUC_REQUEST = "http://jabber.org/protocol/muc#request"
DATA = "jabber:x:data"
OCCUPANT_ID = "urn:xmpp:occupant-id:0"  # XEP-0421
RSM = "http://jabber.org/protocol/rsm"  # XEP-0059
CONFERENCE = "jabber:x:conference"  # XEP-0249 direct invitations

ROLES = ("none", "visitor", "participant", "moderator")
AFFILIATIONS = ("outcast", "none", "member", "admin", "owner")
ROLE_RANK = {r: i for i, r in enumerate(ROLES)}
AFF_RANK = {a: i for i, a in enumerate(AFFILIATIONS)}

# Status codes (XEP-0045 §15.6.2).
NON_ANONYMOUS = "100"
SELF = "110"
CONFIG_CHANGED = "104"
LOGGING_ON = "170"
CREATED = "201"
BANNED = "301"
NICK_CHANGED = "303"
KICKED = "307"
AFFILIATION_REMOVED = "321"
MEMBERS_ONLY_REMOVED = "322"
SHUTDOWN = "332"


def q(ns: str, tag: str) -> str:
    """Clark notation: ``{ns}tag``."""
    return "{%s}%s" % (ns, tag)
