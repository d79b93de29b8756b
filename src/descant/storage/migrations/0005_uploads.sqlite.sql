-- Descant schema 5: HTTP file upload (XEP-0363) slots and the files stored for them.
-- Keep 0005_uploads.sqlite.sql and 0005_uploads.postgres.sql in step.

-- One row per slot handed out. id is the slot's random id (the file's name under
-- data_dir/uploads/ and part of its URLs); token the secret the PUT URL carries.
-- host and username are the uploading account (deleting it deletes its rows; the files
-- left behind are removed by the upload service's sweep). filename is the sanitized name
-- for the URL's last segment only, never a path. size is the announced size in bytes;
-- content_type the announced type ("" when none was given). stored is 0 until the PUT
-- completed (a pending slot), then 1. Quotas sum size over an account's rows (pending
-- slots reserve their size); expiry walks (stored, created).
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    filename TEXT NOT NULL,
    size BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    created TEXT NOT NULL,
    stored SMALLINT NOT NULL
);
CREATE INDEX uploads_owner ON uploads (host, username);
CREATE INDEX uploads_age ON uploads (stored, created);
