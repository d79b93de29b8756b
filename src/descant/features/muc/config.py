"""A room's configuration (XEP-0045 §10.2) and its muc#roomconfig data form.

``RoomConfig`` is what the owner configures; it is stored (as JSON, through
``Storage.rooms``) for persistent rooms. ``to_form`` and ``apply_form`` map it to
and from the muc#roomconfig fields of XEP-0045 §15.5.3.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from descant import forms
from descant.errors import StanzaError
from descant.features.muc.names import MUC_ROOMCONFIG
from descant.jid import InvalidJID, parse

WHOIS = ("moderators", "anyone")
ALLOW_PM = ("anyone", "participants", "moderators", "none")


@dataclass(slots=True)
class RoomConfig:
    name: str = ""
    description: str = ""
    lang: str = ""
    persistent: bool = False
    public: bool = True
    members_only: bool = False
    moderated: bool = False
    password_protected: bool = False
    password: str = ""
    max_users: int = 0  # 0: the service's muc.max_occupants
    whois: str = "moderators"  # "anyone" makes the room non-anonymous
    change_subject: bool = False  # participants may change the subject
    allow_invites: bool = False  # participants may invite to a members-only room
    allow_pm: str = "anyone"
    logging: bool = False

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoomConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def non_anonymous(self) -> bool:
        return self.whois == "anyone"


def to_form(
    cfg: RoomConfig, max_occupants: int, owners: list[str], admins: list[str]
) -> ET.Element:
    def b(v: bool) -> list[str]:
        return ["1" if v else "0"]

    form = forms.build(
        "form",
        MUC_ROOMCONFIG,
        [
            ("muc#roomconfig_roomname", "text-single", "Name", [cfg.name]),
            ("muc#roomconfig_roomdesc", "text-single", "Description", [cfg.description]),
            ("muc#roomconfig_lang", "text-single", "Language", [cfg.lang]),
            ("muc#roomconfig_persistentroom", "boolean", "Persistent", b(cfg.persistent)),
            ("muc#roomconfig_publicroom", "boolean", "Listed in the directory", b(cfg.public)),
            ("muc#roomconfig_membersonly", "boolean", "Members only", b(cfg.members_only)),
            ("muc#roomconfig_moderatedroom", "boolean", "Moderated", b(cfg.moderated)),
            (
                "muc#roomconfig_passwordprotectedroom",
                "boolean",
                "Password protected",
                b(cfg.password_protected),
            ),
            ("muc#roomconfig_roomsecret", "text-private", "Password", [cfg.password]),
            (
                "muc#roomconfig_maxusers",
                "list-single",
                "Maximum occupants",
                [str(cfg.max_users or max_occupants)],
            ),
            ("muc#roomconfig_whois", "list-single", "Who may see real JIDs", [cfg.whois]),
            (
                "muc#roomconfig_changesubject",
                "boolean",
                "Participants may change the subject",
                b(cfg.change_subject),
            ),
            (
                "muc#roomconfig_allowinvites",
                "boolean",
                "Participants may invite",
                b(cfg.allow_invites),
            ),
            (
                "muc#roomconfig_allowpm",
                "list-single",
                "Who may send private messages",
                [cfg.allow_pm],
            ),
            ("muc#roomconfig_enablelogging", "boolean", "Log the discussion", b(cfg.logging)),
            ("muc#roomconfig_roomowners", "jid-multi", "Owners", owners),
            ("muc#roomconfig_roomadmins", "jid-multi", "Admins", admins),
        ],
        title="Room configuration",
    )
    sizes = sorted({10, 20, 30, 50, 100, 200, 500, max_occupants})
    forms.add_options(
        form, "muc#roomconfig_maxusers", [(str(n), str(n)) for n in sizes if n <= max_occupants]
    )
    forms.add_options(form, "muc#roomconfig_whois", [(w, w.capitalize()) for w in WHOIS])
    forms.add_options(form, "muc#roomconfig_allowpm", [(p, p.capitalize()) for p in ALLOW_PM])
    return form


@dataclass(slots=True)
class Submitted:
    """A validated configuration submission."""

    config: RoomConfig
    owners: list[str]
    admins: list[str]


def apply_form(cfg: RoomConfig, form: ET.Element, max_occupants: int) -> Submitted:
    """The configuration a submitted form asks for; StanzaError if it is invalid."""
    ftype = forms.form_type(form)
    if ftype is not None and ftype != MUC_ROOMCONFIG:
        raise StanzaError("bad-request", "not a muc#roomconfig form")
    new = dataclasses.replace(cfg)
    vals = forms.values(form)
    bools = {
        "persistentroom": "persistent",
        "publicroom": "public",
        "membersonly": "members_only",
        "moderatedroom": "moderated",
        "passwordprotectedroom": "password_protected",
        "changesubject": "change_subject",
        "allowinvites": "allow_invites",
        "enablelogging": "logging",
    }
    texts = {
        "roomname": "name",
        "roomdesc": "description",
        "lang": "lang",
        "roomsecret": "password",
    }
    for var, value in vals.items():
        short = var.removeprefix("muc#roomconfig_")
        if short in bools:
            setattr(new, bools[short], forms.boolean(value, var))
        elif short in texts:
            setattr(new, texts[short], forms.single(value))
        elif short == "maxusers":
            raw = forms.single(value)
            if raw in ("", "none"):
                new.max_users = 0
            elif not raw.isdigit() or not 1 <= int(raw) <= max_occupants:
                raise StanzaError("not-acceptable", f"{var}: 1..{max_occupants} or none")
            else:
                new.max_users = int(raw)
        elif short == "whois":
            new.whois = _choice(value, WHOIS, var)
        elif short == "allowpm":
            new.allow_pm = _choice(value, ALLOW_PM, var)
    if new.password_protected and not new.password:
        raise StanzaError("not-acceptable", "a password-protected room needs a password")
    if not new.password_protected:
        new.password = ""
    return Submitted(
        new,
        _jids(vals.get("muc#roomconfig_roomowners", [])),
        _jids(vals.get("muc#roomconfig_roomadmins", [])),
    )


def _choice(value: list[str], choices: tuple[str, ...], var: str) -> str:
    v = forms.single(value)
    if v not in choices:
        raise StanzaError("not-acceptable", f"{var}: one of {', '.join(choices)}")
    return v


def _jids(values: list[str]) -> list[str]:
    out = []
    for v in values:
        if not v:
            continue
        try:
            out.append(str(parse(v).bare))
        except InvalidJID:
            raise StanzaError("jid-malformed", f"{v!r} is not a JID") from None
    return out
