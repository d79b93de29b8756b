-- Descant schema 4: every account's message archive (XEP-0313).
-- Keep 0004_mam.sqlite.sql and 0004_mam.postgres.sql in step.

-- seq gives archive order (AUTOINCREMENT: never reused, so a page boundary stays put after
-- expiry); id is the XEP-0359 stanza-id, unique per account. stamp is ISO 8601 text in UTC
-- with microseconds. with_jid is the other party's bare JID, with_resource its resource
-- ("" when none); origin_id is the sender's XEP-0359 origin-id ("" when none). text is what
-- full-text search looks in ("" when none); stanza the archived XML.
CREATE TABLE mam (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    host TEXT NOT NULL,
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    stamp TEXT NOT NULL,
    with_jid TEXT NOT NULL,
    with_resource TEXT NOT NULL,
    outgoing BOOLEAN NOT NULL,
    origin_id TEXT NOT NULL,
    text TEXT NOT NULL,
    stanza TEXT NOT NULL,
    UNIQUE (host, owner, id)
);
-- Paging through one archive, all of it or with one contact; start/end ranges; the
-- message a retraction names (XEP-0424) by origin-id, newest first. Expiry walks the
-- primary key (seq order is oldest first) and needs no index of its own.
CREATE INDEX mam_owner ON mam (host, owner, seq);
CREATE INDEX mam_with ON mam (host, owner, with_jid, seq);
CREATE INDEX mam_stamp ON mam (host, owner, stamp);
CREATE INDEX mam_origin ON mam (host, owner, with_jid, origin_id, seq);

-- Full-text search (FTS5) over text, reading the words from mam itself (external content):
-- rowid is seq. unicode61 with remove_diacritics 2 matches case- and accent-insensitively.
-- The triggers keep it in step; rows whose text is "" are never indexed.
CREATE VIRTUAL TABLE mam_fts USING fts5(
    text,
    content = 'mam',
    content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2'
);
-- Each trigger body stays on one line: migrations split statements on a ";" ending a line.
CREATE TRIGGER mam_fts_insert AFTER INSERT ON mam WHEN new.text <> '' BEGIN
    INSERT INTO mam_fts (rowid, text) VALUES (new.seq, new.text); END;
CREATE TRIGGER mam_fts_delete AFTER DELETE ON mam WHEN old.text <> '' BEGIN
    INSERT INTO mam_fts (mam_fts, rowid, text) VALUES ('delete', old.seq, old.text); END;
CREATE TRIGGER mam_fts_update_old AFTER UPDATE OF text ON mam WHEN old.text <> '' BEGIN
    INSERT INTO mam_fts (mam_fts, rowid, text) VALUES ('delete', old.seq, old.text); END;
CREATE TRIGGER mam_fts_update_new AFTER UPDATE OF text ON mam WHEN new.text <> '' BEGIN
    INSERT INTO mam_fts (rowid, text) VALUES (new.seq, new.text); END;
