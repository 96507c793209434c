-- Webhooks (issue 14): a job's callback URL, its key's signing secret and
-- default callback URL, and the outbox of deliveries.
--
-- The secret is the HMAC key itself (HMAC needs the key, so it cannot be
-- stored hashed like the token). Keys made before this migration have
-- none until `tandem api keys rotate-webhook-secret` gives them one.
ALTER TABLE api_keys ADD COLUMN webhook_secret TEXT;
-- The previous secret, still signed with until prev_until_ms (rotation).
ALTER TABLE api_keys ADD COLUMN webhook_secret_prev TEXT;
ALTER TABLE api_keys ADD COLUMN webhook_secret_prev_until_ms BIGINT;
-- Copied to each job submitted without its own callback_url.
ALTER TABLE api_keys ADD COLUMN callback_url TEXT;
ALTER TABLE jobs ADD COLUMN callback_url TEXT;

-- One row per job that ended (done, failed, cancelled) with a callback
-- URL, inserted in the transaction that ended it.
CREATE TABLE webhook_deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT, -- also the Tandem-Delivery id
    job_id       TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    url          TEXT NOT NULL,        -- the job's callback URL when it ended
    event        TEXT NOT NULL,        -- the job's state when it ended
    state        TEXT NOT NULL,        -- pending, delivered, failed
    attempts     BIGINT NOT NULL DEFAULT 0,
    next_at_ms   BIGINT NOT NULL,      -- not before: the retry backoff
    lease_token  TEXT,                 -- the replica sending it now
    lease_until_ms BIGINT,
    last_status  BIGINT,               -- the receiver's last HTTP status
    last_error   TEXT,
    created_ms   BIGINT NOT NULL,
    delivered_ms BIGINT,
    finished_ms  BIGINT                -- delivered or given up
);
CREATE INDEX webhook_due ON webhook_deliveries (state, next_at_ms);
CREATE INDEX webhook_job ON webhook_deliveries (job_id, id);
