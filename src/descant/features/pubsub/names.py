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
    "item-ids",
    "last-published",
    "manage-subscriptions",
    "member-affiliation",
    "modify-affiliations",
    "outcast-affiliation",
    "persistent-items",
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


# PEP adds what notifications to contacts' clients need (XEP-0163 §4); the service
# lists its nodes' meta-data (XEP-0060 §5.4).
PEP_FEATURES = (*FEATURES, "filtered-notifications", "presence-notifications")
SERVICE_FEATURES = (*FEATURES, "instant-nodes", "meta-data")


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
