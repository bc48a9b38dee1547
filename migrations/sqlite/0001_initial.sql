-- Heimdall's schema for SQLite (the embedded default); the same tables as migrations/postgres. Never edit an applied migration: add a new one.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    subject       TEXT NOT NULL UNIQUE,
    display_name  TEXT,
    email         TEXT,
    created_at    TEXT NOT NULL,
    last_seen_at  TEXT
);

-- An action names what a mapping's endpoint does; resource_kind is the Cerbos resource kind it applies to.
CREATE TABLE actions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    resource_kind TEXT NOT NULL,
    description   TEXT
);

CREATE TABLE groups (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL UNIQUE,
    description  TEXT,
    created_by   BIGINT REFERENCES users(id) ON DELETE SET NULL,
    created_at   TEXT NOT NULL
);

CREATE TABLE roles (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL UNIQUE,
    description  TEXT,
    created_at   TEXT NOT NULL
);

-- Endpoint -> action mappings. match_key is the pattern's canonical form: two mappings with the same
-- method and match_key would match exactly the same requests, so the unique index rejects the second.
CREATE TABLE endpoints (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    path_pattern    TEXT NOT NULL,
    method          TEXT NOT NULL,
    match_key       TEXT NOT NULL,
    action_id       BIGINT NOT NULL REFERENCES actions(id) ON DELETE RESTRICT,
    owner_group_id  BIGINT REFERENCES groups(id) ON DELETE RESTRICT,
    priority        INTEGER NOT NULL DEFAULT 0,
    description     TEXT,
    created_by      BIGINT REFERENCES users(id) ON DELETE SET NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (method, match_key)
);
CREATE INDEX endpoints_method_idx ON endpoints (method);
CREATE INDEX endpoints_action_idx ON endpoints (action_id);
CREATE INDEX endpoints_owner_group_idx ON endpoints (owner_group_id);

CREATE TABLE group_roles (
    group_id  BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    role_id   BIGINT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, role_id)
);
CREATE INDEX group_roles_group_idx ON group_roles (group_id);
CREATE INDEX group_roles_role_idx ON group_roles (role_id);

CREATE TABLE memberships (
    group_id    BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    granted_by  BIGINT REFERENCES users(id) ON DELETE SET NULL,
    granted_at  TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id);

CREATE TABLE user_roles (
    user_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role_id     BIGINT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    granted_by  BIGINT REFERENCES users(id) ON DELETE SET NULL,
    granted_at  TEXT NOT NULL,
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role_idx ON user_roles (role_id);

-- What a role lets its holders do: the content of the principal policies pushed to Cerbos.
CREATE TABLE role_permissions (
    role_id    BIGINT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    action_id  BIGINT NOT NULL REFERENCES actions(id) ON DELETE CASCADE,
    effect     TEXT NOT NULL CHECK (effect IN ('allow', 'deny')),
    PRIMARY KEY (role_id, action_id)
);
CREATE INDEX role_permissions_action_idx ON role_permissions (action_id);

CREATE TABLE group_management_rights (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    manager_group_id      BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    target_group_pattern  TEXT NOT NULL,
    created_by            BIGINT REFERENCES users(id) ON DELETE SET NULL,
    created_at            TEXT NOT NULL,
    UNIQUE (manager_group_id, target_group_pattern)
);

CREATE TABLE admin_audit (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    actor_user_id    BIGINT REFERENCES users(id) ON DELETE SET NULL,
    actor_subject    TEXT,
    operation        TEXT NOT NULL,
    target_type      TEXT NOT NULL,
    target_id        TEXT NOT NULL,
    request_payload  TEXT NOT NULL,
    result           TEXT NOT NULL,
    success          INTEGER NOT NULL,
    "timestamp"      TEXT NOT NULL
);
CREATE INDEX admin_audit_actor_idx ON admin_audit (actor_subject, id);
CREATE INDEX admin_audit_operation_idx ON admin_audit (operation, id);
CREATE INDEX admin_audit_target_idx ON admin_audit (target_id, id);
CREATE INDEX admin_audit_timestamp_idx ON admin_audit ("timestamp");

-- One row per user whose principal policy must be recomputed and pushed to Cerbos. Written in the same
-- transaction as the change that caused it. generation grows with every new cause, so a worker that
-- pushed an older generation leaves the row for the next push.
CREATE TABLE policy_outbox (
    subject          TEXT PRIMARY KEY,
    generation       BIGINT NOT NULL DEFAULT 1,
    enqueued_at      TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    locked_until     TEXT,
    last_error       TEXT,
    failed           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX policy_outbox_due_idx ON policy_outbox (failed, next_attempt_at);

-- API keys for adapters and automation. Only a hash of the key is stored.
CREATE TABLE api_keys (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    key_hash      TEXT NOT NULL UNIQUE,
    scopes        TEXT NOT NULL,
    created_by    BIGINT REFERENCES users(id) ON DELETE SET NULL,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT,
    last_used_at  TEXT
);

-- The change counter: every mutation of mappings, memberships or grants bumps it in its own transaction
-- (the row lock orders the bumps in commit order), and logs what it changed.
CREATE TABLE change_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  BIGINT NOT NULL
);
INSERT INTO change_version (id, version) VALUES (1, 0);

CREATE TABLE change_log (
    version     BIGINT PRIMARY KEY,
    entity      TEXT NOT NULL,
    entity_key  TEXT NOT NULL,
    changed_at  TEXT NOT NULL
);
CREATE INDEX change_log_entity_idx ON change_log (entity, version);
