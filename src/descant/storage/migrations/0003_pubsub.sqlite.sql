-- Descant schema 3: publish-subscribe nodes (XEP-0060), for PEP (XEP-0163) and services.
-- Keep 0003_pubsub.sqlite.sql and 0003_pubsub.postgres.sql in step.
-- service is an account's bare JID (its PEP service) or a pubsub service's domain; deleting
-- the account deletes every row whose service is its bare JID.

-- config is the pubsub module's JSON text for the node.
CREATE TABLE pubsub_nodes (
    service TEXT NOT NULL,
    node TEXT NOT NULL,
    config TEXT NOT NULL,
    PRIMARY KEY (service, node)
);

-- seq gives publish order (a republished id gets a new one); payload is XML text, "" if none.
CREATE TABLE pubsub_items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    node TEXT NOT NULL,
    id TEXT NOT NULL,
    publisher TEXT NOT NULL,
    stamp TEXT NOT NULL,
    payload TEXT NOT NULL,
    UNIQUE (service, node, id)
);
CREATE INDEX pubsub_items_node ON pubsub_items (service, node, seq);

-- Affiliations by bare JID: owner, publisher, publish-only, member or outcast ("none" is
-- not stored). The (service, jid) index answers "my affiliations" across a service.
CREATE TABLE pubsub_affiliations (
    service TEXT NOT NULL,
    node TEXT NOT NULL,
    jid TEXT NOT NULL,
    affiliation TEXT NOT NULL,
    PRIMARY KEY (service, node, jid)
);
CREATE INDEX pubsub_affiliations_jid ON pubsub_affiliations (service, jid);

-- Subscriptions by the JID that subscribed (bare or full): subscribed, pending or
-- unconfigured.
CREATE TABLE pubsub_subscriptions (
    service TEXT NOT NULL,
    node TEXT NOT NULL,
    jid TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (service, node, jid)
);
CREATE INDEX pubsub_subscriptions_jid ON pubsub_subscriptions (service, jid);
