-- Parameters, cancel, re-drive and retention.
-- params: the submission's JSON object, forwarded to the worker.
-- input_kept: 1 until input_retention empties a finished job's input.
-- jobs_expiry: retention deletes each key's oldest finished jobs
-- (key_id = ? AND finished_ms < ?), one indexed range per key.
-- jobs_inputs: input_retention finds finished jobs still holding inputs.
-- api_keys.retention_ms: a key's own retention (NULL: the config's).
ALTER TABLE jobs ADD COLUMN params TEXT NULL;
ALTER TABLE jobs ADD COLUMN input_kept BIGINT NOT NULL DEFAULT 1;
CREATE INDEX jobs_expiry ON jobs (key_id, finished_ms);
CREATE INDEX jobs_inputs ON jobs (input_kept, finished_ms);
ALTER TABLE api_keys ADD COLUMN retention_ms BIGINT NULL;
