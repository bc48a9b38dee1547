-- The change version a pending outbox row waits to bring to Cerbos: the first change not yet pushed for that
-- user. Every change version below the smallest pending one is in Cerbos (the "pushed version" followers use
-- to drop decisions cached before a push completed). 0 where unknown (rows queued by a reconciliation or after
-- a lost lease): nothing counts as pushed until they are.
ALTER TABLE policy_outbox ADD COLUMN enqueued_version BIGINT NOT NULL DEFAULT 0;
