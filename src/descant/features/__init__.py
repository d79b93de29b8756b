"""Feature modules; DEFAULT_MODULES is what every host loads, in order."""

from __future__ import annotations

from descant.features.adhoc import AdhocModule
from descant.features.admin import AdminModule
from descant.features.avatar import AvatarModule
from descant.features.blocking import BlockingModule
from descant.features.bookmarks import BookmarksModule
from descant.features.caps import CapsModule
from descant.features.carbons import CarbonsModule
from descant.features.csi import ClientStateModule
from descant.features.disco import DiscoModule
from descant.features.invites import InviteModule
from descant.features.legacy_session import LegacySessionModule
from descant.features.mam import MamModule
from descant.features.message import MessageModule
from descant.features.offline import OfflineModule
from descant.features.ping import PingModule
from descant.features.presence import PresenceModule
from descant.features.private import PrivateModule
from descant.features.pubsub import PEPModule
from descant.features.push import PushModule
from descant.features.register import RegisterModule
from descant.features.roster import RosterModule
from descant.features.smacks import StreamManagementModule
from descant.features.vcard import VCardModule
from descant.features.version import VersionModule
from descant.modules import Module

DEFAULT_MODULES: list[type[Module]] = [
    DiscoModule,
    CapsModule,
    MessageModule,
    RosterModule,
    PresenceModule,
    OfflineModule,
    CarbonsModule,
    BlockingModule,
    PingModule,
    LegacySessionModule,
    VersionModule,
    VCardModule,
    StreamManagementModule,
    ClientStateModule,
    PushModule,
    PEPModule,
    PrivateModule,
    BookmarksModule,
    AvatarModule,
    MamModule,
    RegisterModule,
    AdhocModule,
    AdminModule,
    InviteModule,
]
