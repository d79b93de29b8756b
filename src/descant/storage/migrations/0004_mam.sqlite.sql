-- Descant schema 4: every account's message archive (XEP-0313).
-- Keep 0004_mam.sqlite.sql and 0004_mam.postgres.sql in step.

-- Archived messages cost the message path one row each, twice for a chat between two
-- local accounts, so the table is built for cheap inserts: integer keys, two integer
-- indexes, no text in any index.
--
-- mam_owners and mam_jids give each archive (host, owner) and each contact's bare JID a
-- small integer key. Their rows are never deleted, so a key once read stays right in
-- every process's cache (SqlMamStore); a deleted account's row is reused if the name
-- comes back.
CREATE TABLE mam_owners (
    key INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    owner TEXT NOT NULL,
    UNIQUE (host, owner)
);
CREATE TABLE mam_jids (
    key INTEGER PRIMARY KEY,
    jid TEXT NOT NULL UNIQUE
);

-- key is the archive id (XEP-0359 stanza-id) as a number: microseconds since the epoch
-- shifted left by 8, plus 8 random bits (MamIds in storage/api.py). It is the rowid, so
-- it is the archive order, the message's time (start/end are key ranges: no stamp
-- column or index) and the way to a message by id (no id index). Keys are unique across
-- archives: one process never repeats one, and processes sharing the file collide only
-- in the same microsecond with the same random byte (the batch then fails).
-- with_key is the contact (mam_jids), with_resource its resource ("" when none);
-- origin_id is the sender's XEP-0359 origin-id ("" when none), found by walking
-- mam_with newest first (retractions are rare). text is what full-text search looks in
-- ("" when none); stanza the archived XML.
CREATE TABLE mam (
    key INTEGER PRIMARY KEY,
    owner INTEGER NOT NULL,
    with_key INTEGER NOT NULL,
    with_resource TEXT NOT NULL,
    outgoing INTEGER NOT NULL,
    origin_id TEXT NOT NULL,
    text TEXT NOT NULL,
    stanza TEXT NOT NULL
);
-- Paging through one archive, all of it or with one contact. Every index ends with the
-- rowid, so these are (owner, key) and (owner, with_key, key); naming key would store
-- it twice (a fifth more per insert). Expiry walks the rowid.
CREATE INDEX mam_owner ON mam (owner);
CREATE INDEX mam_with ON mam (owner, with_key);

-- Full-text search (FTS5) over text, reading the words from mam itself (external
-- content): rowid is key. unicode61 with remove_diacritics 2 matches case- and
-- accent-insensitively. columnsize=0: no per-row size table (it serves only ranking,
-- which the archive does not use).
--
-- The store inserts the words itself, one multi-row INSERT per batch in the batch's
-- transaction and only for rows with text: a trigger per row would flush FTS5's pending
-- words statement by statement. Updates and deletes are rare (retractions, expiry,
-- account deletion) and go through triggers, which hand FTS5 the old text to remove.
CREATE VIRTUAL TABLE mam_fts USING fts5(
    text,
    content = 'mam',
    content_rowid = 'key',
    tokenize = 'unicode61 remove_diacritics 2',
    columnsize = 0
);
-- Each trigger body stays on one line: migrations split statements on a ";" ending a line.
CREATE TRIGGER mam_fts_delete AFTER DELETE ON mam WHEN old.text <> '' BEGIN
    INSERT INTO mam_fts (mam_fts, rowid, text) VALUES ('delete', old.key, old.text); END;
CREATE TRIGGER mam_fts_update_old AFTER UPDATE OF text ON mam WHEN old.text <> '' BEGIN
    INSERT INTO mam_fts (mam_fts, rowid, text) VALUES ('delete', old.key, old.text); END;
CREATE TRIGGER mam_fts_update_new AFTER UPDATE OF text ON mam WHEN new.text <> '' BEGIN
    INSERT INTO mam_fts (rowid, text) VALUES (new.key, new.text); END;
