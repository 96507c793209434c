-- Times are epoch milliseconds (BIGINT), the portable subset sqlx's Any
-- driver reads the same on SQLite and MySQL. InnoDB for row locks
-- (SELECT ... FOR UPDATE SKIP LOCKED, MariaDB >= 10.6).
CREATE TABLE api_keys (
    id          VARCHAR(32) PRIMARY KEY,
    name        VARCHAR(255) NOT NULL,
    token_hash  VARBINARY(32) NOT NULL,
    rate        DOUBLE NOT NULL,
    burst       BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE rate_limits (
    key_id      VARCHAR(32) PRIMARY KEY,
    tat_us      BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE jobs (
    seq          BIGINT AUTO_INCREMENT PRIMARY KEY,
    id           VARCHAR(40) NOT NULL UNIQUE,
    key_id       VARCHAR(32) NOT NULL,
    kind         VARCHAR(64) NOT NULL,
    state        VARCHAR(16) NOT NULL,
    input        LONGBLOB NOT NULL,
    input_type   VARCHAR(255) NOT NULL,
    idem_key     VARCHAR(255) NULL,
    body_hash    VARBINARY(32) NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    run_at_ms    BIGINT NOT NULL,
    lease_token  VARCHAR(64) NULL,
    lease_owner  VARCHAR(64) NULL,
    lease_until_ms BIGINT NULL,
    last_error   TEXT NULL,
    created_ms   BIGINT NOT NULL,
    started_ms   BIGINT NULL,
    finished_ms  BIGINT NULL,
    UNIQUE KEY jobs_idem (key_id, idem_key),
    KEY jobs_claim (kind, state, run_at_ms),
    KEY jobs_lease (kind, state, lease_until_ms),
    KEY jobs_owner (key_id, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE results (
    job_id       VARCHAR(40) PRIMARY KEY,
    content_type VARCHAR(255) NOT NULL,
    body         LONGBLOB NOT NULL,
    attempt      BIGINT NOT NULL,
    created_ms   BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE request_log (
    id          BIGINT AUTO_INCREMENT PRIMARY KEY,
    ts_ms       BIGINT NOT NULL,
    key_id      VARCHAR(32) NULL,
    client      VARCHAR(64) NOT NULL,
    method      VARCHAR(16) NOT NULL,
    route       VARCHAR(64) NOT NULL,
    status      BIGINT NOT NULL,
    latency_us  BIGINT NOT NULL,
    bytes_in    BIGINT NOT NULL,
    bytes_out   BIGINT NOT NULL,
    KEY request_log_ts (ts_ms)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
