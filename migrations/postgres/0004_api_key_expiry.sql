-- An API key may expire: past expires_at it authenticates nothing, like a revoked one. NULL: no expiry.
ALTER TABLE api_keys ADD COLUMN expires_at TIMESTAMPTZ;
