-- Descant schema 6: account invitations (XEP-0401, XEP-0445, XEP-0379).
-- Keep 0006_invites.sqlite.sql and 0006_invites.postgres.sql in step.

-- One row per invitation. token is the secret the xmpp: URI and the landing page URL
-- carry. host is the domain the invitee registers on; username the inviting account
-- ("" when the operator made it on the command line; deleting the account deletes its
-- invitations). expires is NULL for an invitation that never expires. used is 0 until a
-- registration claims it, then 1; used_by is the account registered with it ("" while the
-- registration is under way). Counting an account's pending invitations walks
-- invites_owner; expiry walks invites_expires.
CREATE TABLE invites (
    token TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    created TIMESTAMPTZ NOT NULL,
    expires TIMESTAMPTZ,
    used SMALLINT NOT NULL,
    used_by TEXT NOT NULL
);
CREATE INDEX invites_owner ON invites (host, username);
CREATE INDEX invites_expires ON invites (expires);
