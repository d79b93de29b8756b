"""Module base class and loading: every feature is a Module on a Host.

A module declares ``name`` and hooks events in :meth:`load` through
:meth:`hook`, which records them so :meth:`unload` removes them. It may add
disco features and identities to its host. The same API serves users'
own modules (docs/modules.md).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from descant.events import Handler
from descant.tasks import TaskGroup

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

    from descant.host import Host
    from descant.routing.router import StanzaEvent
    from descant.server import Server


M = TypeVar("M", bound="Module")


class Module:
    name: ClassVar[str] = ""
    # Background tasks a module may run at once (push notifications, expiries …).
    max_tasks: ClassVar[int] = 1000

    def __init__(self, host: Host) -> None:
        self.host = host
        self.server: Server = host.server
        self.log = logging.getLogger(f"descant.{self.name}")
        self._hooks: list[tuple[str, Handler]] = []
        self._sync_nonzas: list[str] = []
        # Owned and bounded: closed (what is left cancelled) when the host stops.
        self.tasks = TaskGroup(f"{host.domain}/{self.name}", self.max_tasks)

    def require(self, cls: type[M]) -> M:
        """The module of class ``cls`` on this host, which this one needs to work."""
        mod = self.host.modules.get(cls.name)
        if not isinstance(mod, cls):
            raise RuntimeError(f"the {self.name} module needs the {cls.name} module")
        return mod

    def hook(self, event: str, handler: Handler, priority: int = 0) -> None:
        self.host.events.hook(event, handler, priority)
        self._hooks.append((event, handler))

    def hook_nonza(self, key: str, handler: Callable[[Any], bool]) -> None:
        """Take the nonza ``key`` (``"<ns>:<tag>"``) with a plain function that needs no
        waiting (an ack, a state flag): it gets the ``NonzaEvent`` in place of the
        ``nonza/<key>`` event, saving a hop per element on hot paths; True: taken."""
        name = f"nonza/{key}"
        self.host.sync_nonzas[name] = handler
        self._sync_nonzas.append(name)

    def hook_iq(self, type_: str, to: str, payload: str, handler: Handler) -> None:
        """Hook ``iq-<type>/<to>/<payload>``; ``to`` may list several kinds."""
        for kind in to.split(","):
            self.hook(f"iq-{type_}/{kind}/{payload}", handler)

    async def answer(self, ev: StanzaEvent, answer: ET.Element) -> bool:
        """Send the answer to a request the server handled (result or error).

        It comes from the address the request was sent to — the account's bare
        JID when the request had no ``to`` — and goes straight to the asking
        session when that is local, else through the router. Returns True, so a
        handler can ``return await self.answer(...)``.
        """
        if not answer.get("from"):
            answer.set("from", str(ev.to))
        if ev.origin is not None:
            ev.origin.send(answer)
        else:
            await self.server.router.route(answer)
        return True

    async def send_iq(self, iq: ET.Element, timeout: float = 30.0) -> ET.Element:
        """Send an iq get/set (``from`` defaults to the host) and return the result or
        error stanza that answers it. The id is set here, unguessable, and only an
        answer from the address asked counts. Raises TimeoutError after ``timeout`` s."""
        return await self.host.requests.send(iq, timeout)

    def load(self) -> None:
        """Register hooks and items; called once when the host starts."""

    async def start(self) -> None:
        """Optional async start-up after every module is loaded."""

    async def stop(self) -> None:
        """Release resources at shutdown."""

    def unload(self) -> None:
        for event, handler in self._hooks:
            self.host.events.unhook(event, handler)
        self._hooks.clear()
        for name in self._sync_nonzas:
            self.host.sync_nonzas.pop(name, None)
        self._sync_nonzas.clear()


class HookSet:
    """Hooks a module keeps in place only while something needs them (carbons while
    someone has them on, push while an online user has registrations), so that other
    traffic does not pay for them: ``set(active)`` hooks or unhooks them all."""

    def __init__(self, module: Module, hooks: tuple[tuple[str, Handler, int], ...]) -> None:
        self.events = module.host.events
        self.hooks = hooks
        self.active = False

    def set(self, active: bool) -> None:
        if active == self.active:
            return
        self.active = active
        for name, handler, priority in self.hooks:
            if active:
                self.events.hook(name, handler, priority)
            else:
                self.events.unhook(name, handler)


def load_modules(host: Host, classes: list[type[Module]]) -> dict[str, Module]:
    out: dict[str, Module] = {}
    for cls in classes:
        mod = cls(host)
        mod.load()
        out[cls.name] = mod
    return out


def import_module_class(spec: str) -> type[Module]:
    """The Module subclass named by ``"package.module:ClassName"`` (``[modules] extra``)."""
    from descant.config import ConfigError

    path, _, name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(path), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"modules.extra: cannot load {spec!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Module)) or not cls.name:
        raise ConfigError(f"modules.extra: {spec!r} is not a Module subclass with a name")
    return cls
