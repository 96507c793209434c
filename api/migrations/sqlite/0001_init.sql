-- Times are epoch milliseconds (BIGINT), the portable subset sqlx's Any
-- driver reads the same on SQLite and MySQL.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,      -- public key id, part of the token
    name        TEXT NOT NULL,
    token_hash  BLOB NOT NULL,         -- SHA-256 of the whole token
    rate        DOUBLE NOT NULL,       -- requests per second
    burst       BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT
);

CREATE TABLE rate_limits (
    key_id      TEXT PRIMARY KEY,
    tat_us      BIGINT NOT NULL        -- GCRA theoretical arrival time, epoch µs
);

CREATE TABLE jobs (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    key_id       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    state        TEXT NOT NULL,        -- queued, running, done, failed
    input        BLOB NOT NULL,
    input_type   TEXT NOT NULL,
    idem_key     TEXT,
    body_hash    BLOB NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    run_at_ms    BIGINT NOT NULL,      -- not before: retry backoff
    lease_token  TEXT,
    lease_owner  TEXT,
    lease_until_ms BIGINT,
    last_error   TEXT,
    created_ms   BIGINT NOT NULL,
    started_ms   BIGINT,
    finished_ms  BIGINT,
    UNIQUE (key_id, idem_key)
);
CREATE INDEX jobs_claim ON jobs (kind, state, run_at_ms);
CREATE INDEX jobs_lease ON jobs (kind, state, lease_until_ms);
CREATE INDEX jobs_owner ON jobs (key_id, seq);

CREATE TABLE results (
    job_id       TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    body         BLOB NOT NULL,
    attempt      BIGINT NOT NULL,
    created_ms   BIGINT NOT NULL
);

CREATE TABLE request_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms       BIGINT NOT NULL,
    key_id      TEXT,
    client      TEXT NOT NULL,
    method      TEXT NOT NULL,
    route       TEXT NOT NULL,
    status      BIGINT NOT NULL,
    latency_us  BIGINT NOT NULL,
    bytes_in    BIGINT NOT NULL,
    bytes_out   BIGINT NOT NULL
);
CREATE INDEX request_log_ts ON request_log (ts_ms);
