"""Namespaces and error helpers of publish-subscribe (XEP-0060) and PEP (XEP-0163)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from descant.errors import StanzaError

PUBSUB = "http://jabber.org/protocol/pubsub"
OWNER = PUBSUB + "#owner"
EVENT = PUBSUB + "#event"
ERRORS = PUBSUB + "#errors"
NODE_CONFIG = PUBSUB + "#node_config"
PUBLISH_OPTIONS = PUBSUB + "#publish-options"
META_DATA = PUBSUB + "#meta-data"

# What both the PEP service and pubsub.<domain> implement (XEP-0060 §10), each as
# "http://jabber.org/protocol/pubsub#<name>".
FEATURES = (
    "access-open",
    "access-presence",
    "access-roster",
    "access-whitelist",
    "auto-create",
    "config-node",
    "create-and-configure",
    "create-nodes",
    "delete-items",
    "delete-nodes",
    "filtered-notifications",
    "item-ids",
    "last-published",
    "manage-subscriptions",
    "member-affiliation",
    "meta-data",
    "modify-affiliations",
    "outcast-affiliation",
    "persistent-items",
    "presence-notifications",
    "publish",
    "publish-only-affiliation",
    "publish-options",
    "publisher-affiliation",
    "purge-nodes",
    "retract-items",
    "retrieve-affiliations",
    "retrieve-default",
    "retrieve-items",
    "retrieve-subscriptions",
    "subscribe",
)


def q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def error(
    condition: str, app: str | None = None, text: str | None = None, **attrs: str
) -> StanzaError:
    """A stanza error with the XEP-0060 application condition ``app`` (pubsub#errors)."""
    el = ET.Element(q(ERRORS, app), attrs) if app else None
    return StanzaError(condition, text, app=el)


def unsupported(feature: str) -> StanzaError:
    """<feature-not-implemented/> naming the pubsub feature (XEP-0060 §7.1.3.x)."""
    return error("feature-not-implemented", "unsupported", feature=feature)
