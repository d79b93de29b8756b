"""Data forms (XEP-0004): building them, and reading the values of a submitted one
(multi-user chat configuration and requests, push notification options)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable

from descant.errors import StanzaError

DATA = "jabber:x:data"

Field = tuple[str, str, str, list[str]]  # (var, type, label, values)


def build(type_: str, form_type: str, fields: Iterable[Field], title: str = "") -> ET.Element:
    x = ET.Element(f"{{{DATA}}}x", {"type": type_})
    if title:
        ET.SubElement(x, f"{{{DATA}}}title").text = title
    hidden = ET.SubElement(x, f"{{{DATA}}}field", {"var": "FORM_TYPE", "type": "hidden"})
    ET.SubElement(hidden, f"{{{DATA}}}value").text = form_type
    for var, ftype, label, values in fields:
        attrs = {"var": var}
        if ftype:
            attrs["type"] = ftype
        if label:
            attrs["label"] = label
        f = ET.SubElement(x, f"{{{DATA}}}field", attrs)
        for v in values:
            ET.SubElement(f, f"{{{DATA}}}value").text = v
    return x


def add_options(form: ET.Element, var: str, options: Iterable[tuple[str, str]]) -> None:
    for f in form.iter(f"{{{DATA}}}field"):
        if f.get("var") == var:
            for value, label in options:
                opt = ET.SubElement(f, f"{{{DATA}}}option", {"label": label})
                ET.SubElement(opt, f"{{{DATA}}}value").text = value


def values(form: ET.Element) -> dict[str, list[str]]:
    """var → values of a submitted form."""
    out: dict[str, list[str]] = {}
    for f in form.findall(f"{{{DATA}}}field"):
        var = f.get("var")
        if var:
            out[var] = [v.text or "" for v in f.findall(f"{{{DATA}}}value")]
    return out


def form_type(form: ET.Element) -> str | None:
    v = values(form).get("FORM_TYPE")
    return v[0] if v else None


def boolean(value: list[str], var: str) -> bool:
    if not value:
        return False
    if value[0] in ("1", "true"):
        return True
    if value[0] in ("0", "false"):
        return False
    raise StanzaError("bad-request", f"{var}: not a boolean")


def single(value: list[str]) -> str:
    return value[0] if value else ""
