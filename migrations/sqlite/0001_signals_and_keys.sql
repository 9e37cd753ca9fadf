-- Signals and the keys that sign their tokens. Times are seconds since the
-- Unix epoch. Token digests are SHA-256 of the token (32 bytes); the token
-- itself is never stored.
CREATE TABLE signals (
    id TEXT PRIMARY KEY NOT NULL,
    token_digest BLOB NOT NULL,
    -- The token replaced by the last rotation, accepted until
    -- previous_token_expires_at when the operator gave a grace period.
    previous_token_digest BLOB,
    previous_token_expires_at INTEGER,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    rotated_at INTEGER
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    algorithm TEXT NOT NULL,
    -- PKCS#8 DER. Anyone who can read this column can sign tokens, so the
    -- database file is created readable by its owner only.
    private_key BLOB NOT NULL,
    public_key BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    -- Seconds since the epoch at which the key stopped signing; NULL while
    -- it is the active key.
    retired_at INTEGER
);
