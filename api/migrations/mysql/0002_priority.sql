-- Claim order within a kind: priority first (0 runs first, 9 last), then
-- round-robin over the API keys that have runnable jobs, then run_at.
-- jobs_ready serves both halves of a fair claim: the walk over the
-- distinct keys with queued jobs (kind, state, key_id) and each key's
-- first jobs in claim order (… priority, run_at_ms, seq).
ALTER TABLE jobs
    ADD COLUMN priority BIGINT NOT NULL DEFAULT 0,
    DROP INDEX jobs_claim,
    ADD INDEX jobs_ready (kind, state, key_id, priority, run_at_ms, seq);
