-- Webhooks (issue 14): a job's callback URL, its key's signing secret and
-- default callback URL, and the outbox of deliveries.
--
-- The secret is the HMAC key itself (HMAC needs the key, so it cannot be
-- stored hashed like the token). Keys made before this migration have
-- none until `tandem api keys rotate-webhook-secret` gives them one.
-- webhook_secret_prev is still signed with until prev_until_ms (rotation);
-- the key's callback_url is copied to each job submitted without its own.
ALTER TABLE api_keys
    ADD COLUMN webhook_secret VARCHAR(128) NULL,
    ADD COLUMN webhook_secret_prev VARCHAR(128) NULL,
    ADD COLUMN webhook_secret_prev_until_ms BIGINT NULL,
    ADD COLUMN callback_url TEXT NULL;
ALTER TABLE jobs ADD COLUMN callback_url TEXT NULL;

-- One row per job that ended (done, failed, cancelled) with a callback
-- URL, inserted in the transaction that ended it. id is also the
-- Tandem-Delivery id; event is the job's state when it ended; state is
-- pending, delivered or failed.
CREATE TABLE webhook_deliveries (
    id           BIGINT AUTO_INCREMENT PRIMARY KEY,
    job_id       VARCHAR(40) NOT NULL,
    key_id       VARCHAR(32) NOT NULL,
    url          TEXT NOT NULL,
    event        VARCHAR(16) NOT NULL,
    state        VARCHAR(16) NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    next_at_ms   BIGINT NOT NULL,
    lease_token  VARCHAR(64) NULL,
    lease_until_ms BIGINT NULL,
    last_status  BIGINT NULL,
    last_error   TEXT NULL,
    created_ms   BIGINT NOT NULL,
    delivered_ms BIGINT NULL,
    finished_ms  BIGINT NULL,
    KEY webhook_due (state, next_at_ms),
    KEY webhook_job (job_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
