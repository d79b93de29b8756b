-- Descant schema 2: multi-user chat rooms (XEP-0045) and their archive (XEP-0313).
-- Keep 0002_rooms.sqlite.sql and 0002_rooms.postgres.sql in step.

-- config is the MUC module's JSON text for the room (name, options, subject).
CREATE TABLE rooms (
    service TEXT NOT NULL,
    room TEXT NOT NULL,
    config TEXT NOT NULL,
    PRIMARY KEY (service, room)
);

-- Affiliations by bare JID: owner, admin, member or outcast ("none" is not stored).
CREATE TABLE room_affiliations (
    service TEXT NOT NULL,
    room TEXT NOT NULL,
    jid TEXT NOT NULL,
    affiliation TEXT NOT NULL,
    PRIMARY KEY (service, room, jid)
);

-- Messages of rooms that log; seq gives archive order, id is the XEP-0359 stanza-id.
CREATE TABLE room_archive (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    room TEXT NOT NULL,
    id TEXT NOT NULL,
    stamp TEXT NOT NULL,
    nick TEXT NOT NULL,
    stanza TEXT NOT NULL,
    UNIQUE (service, room, id)
);
CREATE INDEX room_archive_room ON room_archive (service, room, seq);
