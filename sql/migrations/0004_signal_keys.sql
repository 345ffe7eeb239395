-- Idempotency keys of signals: a signal sent again to the same run with the same key
-- stores nothing new, also after the first one was consumed (its inbox row is gone then).
-- Deleted with the run by prune.
CREATE TABLE signal_keys (
    run_id      text        NOT NULL,
    key         text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, key)
);
