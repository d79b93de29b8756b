"""Node configuration (XEP-0060 §8.2): the options a node has, its form, and
publish-options preconditions (XEP-0060 §7.1.5, XEP-0223).

A ``NodeConfig`` is stored as JSON (``to_json``/``from_json``); the form is built
from it and a submitted form applied to it, with ``<not-acceptable/>`` for a
value the option does not allow. ``max_items`` is a number; the form's "max"
means the service's upper bound.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from descant import forms
from descant.errors import StanzaError
from descant.features.pubsub.names import NODE_CONFIG, error

ACCESS_MODELS = ("open", "presence", "roster", "whitelist")
PUBLISH_MODELS = ("publishers", "subscribers", "open")
SEND_LAST = ("never", "on_sub", "on_sub_and_presence")

_P = "pubsub#"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    access_model: str = "presence"
    publish_model: str = "publishers"
    persist_items: bool = True
    max_items: int = 1
    send_last_published_item: str = "on_sub_and_presence"
    notify_retract: bool = True
    notify_delete: bool = True
    notify_config: bool = False
    deliver_notifications: bool = True
    deliver_payloads: bool = True
    title: str = ""
    description: str = ""
    type: str = ""
    roster_groups_allowed: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["roster_groups_allowed"] = list(self.roster_groups_allowed)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], defaults: NodeConfig) -> NodeConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "roster_groups_allowed" in values:
            values["roster_groups_allowed"] = tuple(values["roster_groups_allowed"])
        return dataclasses.replace(defaults, **values)

    def stored_items(self) -> int:
        """How many items storage keeps: the last one only for a node that does not
        persist items (it is still sent to new subscribers, XEP-0060 §6.1.7)."""
        return self.max_items if self.persist_items else 1

    def form(self, max_items: int) -> ET.Element:
        """The node configuration form (XEP-0060 §8.2.1) with the current values."""
        b = _bool
        fields: list[forms.Field] = [
            (_P + "title", "text-single", "A short name for the node", [self.title]),
            (_P + "description", "text-single", "A description of the node", [self.description]),
            (_P + "type", "text-single", "The type of node data", [self.type]),
            (
                _P + "access_model",
                "list-single",
                "Who may subscribe and retrieve items",
                [self.access_model],
            ),
            (
                _P + "roster_groups_allowed",
                "list-multi",
                "Roster groups allowed to subscribe",
                list(self.roster_groups_allowed),
            ),
            (_P + "publish_model", "list-single", "Who may publish", [self.publish_model]),
            (_P + "persist_items", "boolean", "Persist items to storage", [b(self.persist_items)]),
            (
                _P + "max_items",
                "text-single",
                f"Max number of items to persist (max {max_items})",
                [str(self.max_items)],
            ),
            (
                _P + "send_last_published_item",
                "list-single",
                "When to send the last item",
                [self.send_last_published_item],
            ),
            (
                _P + "deliver_notifications",
                "boolean",
                "Deliver event notifications",
                [b(self.deliver_notifications)],
            ),
            (
                _P + "deliver_payloads",
                "boolean",
                "Deliver payloads with event notifications",
                [b(self.deliver_payloads)],
            ),
            (
                _P + "notify_retract",
                "boolean",
                "Notify subscribers when items are removed",
                [b(self.notify_retract)],
            ),
            (
                _P + "notify_delete",
                "boolean",
                "Notify subscribers when the node is deleted",
                [b(self.notify_delete)],
            ),
            (
                _P + "notify_config",
                "boolean",
                "Notify subscribers when the configuration changes",
                [b(self.notify_config)],
            ),
        ]
        form = forms.build("form", NODE_CONFIG, fields)
        forms.add_options(form, _P + "access_model", ((m, m) for m in ACCESS_MODELS))
        forms.add_options(form, _P + "publish_model", ((m, m) for m in PUBLISH_MODELS))
        forms.add_options(form, _P + "send_last_published_item", ((m, m) for m in SEND_LAST))
        return form

    def apply(self, values: dict[str, list[str]], max_items: int) -> NodeConfig:
        """This configuration with a submitted form's values; unknown options are
        ignored (clients send options of extensions we do not implement)."""
        changes: dict[str, Any] = {}
        for var, value in values.items():
            if not var.startswith(_P):
                continue
            name = var[len(_P) :]
            if name in _CHOICES:
                choice = forms.single(value)
                if choice not in _CHOICES[name]:
                    raise StanzaError("not-acceptable", f"{var}: {choice!r} is not allowed")
                changes[name] = choice
            elif name in _BOOLEANS:
                try:
                    changes[name] = forms.boolean(value, var)
                except StanzaError:
                    raise StanzaError("not-acceptable", f"{var}: not a boolean") from None
            elif name in ("title", "description", "type"):
                changes[name] = forms.single(value)
            elif name == "roster_groups_allowed":
                changes[name] = tuple(value)
            elif name == "max_items":
                changes[name] = parse_max_items(forms.single(value), max_items)
        return dataclasses.replace(self, **changes)

    def with_options(self, values: dict[str, list[str]], max_items: int) -> NodeConfig:
        """This configuration with publish options (XEP-0060 §7.1.5) applied, for a node
        they create: an option unknown here, or a value it cannot take, is
        <conflict/> with <precondition-not-met/> (publish options are not ignored)."""
        for var in values:
            if var not in _OPTION_VARS:
                raise error("conflict", "precondition-not-met", f"{var} is not supported")
        try:
            return self.apply(values, max_items)
        except StanzaError as exc:
            raise error("conflict", "precondition-not-met", exc.text) from None

    def check_preconditions(self, values: dict[str, list[str]], max_items: int) -> None:
        """Publish options on an existing node: every option given must equal the
        node's, else <conflict/> with <precondition-not-met/>."""
        wanted = self.with_options(values, max_items)
        for var in values:
            name = var[len(_P) :]
            if getattr(wanted, name) != getattr(self, name):
                raise error("conflict", "precondition-not-met", f"{var} differs from the node's")


def parse_max_items(text: str, upper: int) -> int:
    if text == "max":
        return upper
    try:
        value = int(text)
    except ValueError:
        raise StanzaError("not-acceptable", "pubsub#max_items: not a number") from None
    if not 1 <= value <= upper:
        raise StanzaError("not-acceptable", f"pubsub#max_items: must be 1..{upper} or max")
    return value


def _bool(value: bool) -> str:
    return "1" if value else "0"


_CHOICES = {
    "access_model": ACCESS_MODELS,
    "publish_model": PUBLISH_MODELS,
    "send_last_published_item": SEND_LAST,
}
_BOOLEANS = {
    "persist_items",
    "notify_retract",
    "notify_delete",
    "notify_config",
    "deliver_notifications",
    "deliver_payloads",
}
_NAMES = {f.name for f in dataclasses.fields(NodeConfig)}
_OPTION_VARS = {_P + name for name in _NAMES}
