-- The tables Cerbos 0.55's `postgres` storage driver reads and writes (it checks they exist at start and never
-- creates them). Run once, as an administrator, in the database Cerbos is given (a database of its own, here
-- `cerbos`, beside Heimdall's on the same server), before the first Cerbos starts:
--   createdb cerbos && psql -d cerbos -f deploy/cerbos/postgres.sql
-- The names and columns are Cerbos' contract; its revision history (policy_revision) stays empty here because
-- nothing reads it: Heimdall's audit log is where its changes are recorded.
-- heimdall-core's test support applies this file to the test clusters; see the README's production section.

CREATE TABLE IF NOT EXISTS policy (
    id          BIGINT        NOT NULL PRIMARY KEY,
    kind        VARCHAR(128)  NOT NULL,
    name        VARCHAR(1024) NOT NULL,
    version     VARCHAR(128)  NOT NULL,
    scope       VARCHAR(512),
    description TEXT,
    disabled    BOOLEAN DEFAULT false,
    definition  BYTEA
);

CREATE TABLE IF NOT EXISTS policy_dependency (
    policy_id     BIGINT REFERENCES policy (id) ON DELETE CASCADE,
    dependency_id BIGINT,
    PRIMARY KEY (policy_id, dependency_id)
);

CREATE TABLE IF NOT EXISTS policy_ancestor (
    policy_id   BIGINT REFERENCES policy (id) ON DELETE CASCADE,
    ancestor_id BIGINT,
    PRIMARY KEY (policy_id, ancestor_id)
);

CREATE TABLE IF NOT EXISTS policy_revision (
    revision_id      SERIAL PRIMARY KEY,
    action           VARCHAR(64),
    id               BIGINT,
    kind             VARCHAR(128),
    name             VARCHAR(1024),
    version          VARCHAR(128),
    scope            VARCHAR(512),
    description      TEXT,
    disabled         BOOLEAN,
    definition       BYTEA,
    update_timestamp TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS attr_schema_defs (
    id         VARCHAR(255) PRIMARY KEY,
    definition JSON
);
