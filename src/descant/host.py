"""A Host is one served domain: its event bus, sessions, modules and the
items modules provide (disco features and identities, stream features)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from descant.events import EventBus
from descant.modules import Module, load_modules
from descant.routing.requests import IqRequests
from descant.routing.sessions import SessionRegistry
from descant.xml import ns

if TYPE_CHECKING:
    from descant.server import Server
    from descant.storage.api import Storage


class Host:
    def __init__(self, server: Server, domain: str) -> None:
        self.server = server
        self.domain = domain
        self.events = EventBus()
        self.sessions = SessionRegistry()
        self.modules: dict[str, Module] = {}
        self.features: set[str] = set()
        # Features an account of this host offers (its bare JID's disco#info).
        self.account_features: set[str] = set()
        self.account_identities: list[tuple[str, str]] = [("account", "registered")]
        self.identities: list[tuple[str, str, str]] = []
        self.stream_features: list[ET.Element] = []
        # Offered to clients before authentication (in-band registration, XEP-0077).
        self.pre_auth_features: list[ET.Element] = []
        self.requests = IqRequests(self)  # the server's own iq requests and their answers
        # nonza/<ns>:<tag> → a handler that needs no waiting (Module.hook_nonza).
        self.sync_nonzas: dict[str, Callable[[Any], bool]] = {}

    @property
    def storage(self) -> Storage:
        return self.server.storage

    def load(self, classes: list[type[Module]]) -> None:
        self.modules = load_modules(self, classes)

    def add_feature(self, *names: str) -> None:
        self.features.update(names)

    def add_account_feature(self, *names: str) -> None:
        self.account_features.update(names)

    def add_account_identity(self, category: str, type_: str) -> None:
        self.account_identities.append((category, type_))

    def add_identity(self, category: str, type_: str, name: str = "") -> None:
        self.identities.append((category, type_, name))

    def disco_info(self) -> ET.Element:
        """The disco#info query (XEP-0030) of what the host's modules registered."""
        query = ET.Element("{%s}query" % ns.DISCO_INFO)
        for category, type_, name in self.identities:
            attrs = {"category": category, "type": type_}
            if name:
                attrs["name"] = name
            ET.SubElement(query, "{%s}identity" % ns.DISCO_INFO, attrs)
        for feature in sorted(self.features):
            ET.SubElement(query, "{%s}feature" % ns.DISCO_INFO, {"var": feature})
        return query

    async def start(self) -> None:
        for mod in self.modules.values():
            await mod.start()

    async def stop(self) -> None:
        for mod in self.modules.values():
            await mod.stop()
            await mod.tasks.close(1.0)
            mod.unload()
