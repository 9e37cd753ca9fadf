-- Signals and the keys that sign their tokens, as in the SQLite schema.
-- Times are seconds since the Unix epoch. Token digests are SHA-256 of the
-- token (32 bytes); the token itself is never stored.
CREATE TABLE signals (
    id TEXT PRIMARY KEY,
    token_digest BYTEA NOT NULL,
    -- The token replaced by the last rotation, accepted until
    -- previous_token_expires_at when the operator gave a grace period.
    previous_token_digest BYTEA,
    previous_token_expires_at BIGINT,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL,
    rotated_at BIGINT
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    algorithm TEXT NOT NULL,
    -- PKCS#8 DER. Anyone who can read this column can sign tokens, so grant
    -- access to this table to the service's role only.
    private_key BYTEA NOT NULL,
    public_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    -- Seconds since the epoch at which the key stopped signing; NULL while
    -- it is the active key.
    retired_at BIGINT,
    -- Insertion order, which breaks ties between keys created in the same
    -- second, as SQLite's rowid does.
    insertion_order BIGINT GENERATED ALWAYS AS IDENTITY
);
