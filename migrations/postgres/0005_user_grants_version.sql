-- The change version at which each user's grants last changed (written with the change, by the statements that
-- put the user into the principal-policy outbox): followers that hold grants on demand ask which subjects changed
-- since the version they hold (`grants_changed_since`). 0: unchanged since the user was created.
ALTER TABLE users ADD COLUMN grants_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX users_grants_version_idx ON users (grants_version);
