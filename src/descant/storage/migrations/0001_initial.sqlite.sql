-- Descant schema 1 for SQLite. Keep in step with 0001_initial.postgres.sql: the same
-- tables and columns, differing only in types the engines name differently.

CREATE TABLE accounts (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    sha1_salt BLOB NOT NULL,
    sha1_iterations INTEGER NOT NULL,
    sha1_stored_key BLOB NOT NULL,
    sha1_server_key BLOB NOT NULL,
    sha256_salt BLOB NOT NULL,
    sha256_iterations INTEGER NOT NULL,
    sha256_stored_key BLOB NOT NULL,
    sha256_server_key BLOB NOT NULL,
    PRIMARY KEY (host, username)
);

CREATE TABLE roster (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    jid TEXT NOT NULL,
    name TEXT,
    subscription TEXT NOT NULL DEFAULT 'none',
    ask BOOLEAN NOT NULL DEFAULT 0,
    approved BOOLEAN NOT NULL DEFAULT 0,
    groups_json TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (host, username, jid)
);

CREATE TABLE roster_version (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (host, username)
);

-- id gives arrival order; AUTOINCREMENT so ids are never reused after deletes.
CREATE TABLE roster_pending_in (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    contact TEXT NOT NULL,
    stanza TEXT NOT NULL,
    UNIQUE (host, username, contact)
);

-- stamp is ISO 8601 text in UTC with microseconds.
CREATE TABLE offline (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    stanza TEXT NOT NULL,
    stamp TEXT NOT NULL
);
CREATE INDEX offline_user ON offline (host, username, id);

CREATE TABLE keyval (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    store TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (host, username, store, key)
);
