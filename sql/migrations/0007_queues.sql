-- Flow control: queues with concurrency, per-worker and per-key limits, a sliding-window
-- rate limit, priorities and dedup keys. docs/internals.md ("Queues") explains admission.

-- One row per queue: its limits (NULL: no limit). Declarations write it (latest wins);
-- the claim of a queue's runs locks it, which serialises admissions per queue.
CREATE TABLE queues (
    name                text             PRIMARY KEY,
    concurrency         integer          CHECK (concurrency > 0),
    worker_concurrency  integer          CHECK (worker_concurrency > 0),
    key_concurrency     integer          CHECK (key_concurrency > 0),
    rate_limit          integer          CHECK (rate_limit > 0),
    rate_per            double precision CHECK (rate_per > 0),
    updated_at          timestamptz      NOT NULL DEFAULT now(),
    CHECK ((rate_limit IS NULL) = (rate_per IS NULL))
);

-- queue: the run's queue (NULL: not limited); admitted_at: when a worker started it
-- through its queue (from then on it holds a slot until it ends or is blocked; it is
-- also the start the rate limit counts); dedup_key: unique among the queue's active runs.
ALTER TABLE runs
    ADD COLUMN queue            text,
    ADD COLUMN priority         integer NOT NULL DEFAULT 0,
    ADD COLUMN concurrency_key  text,
    ADD COLUMN dedup_key        text,
    ADD COLUMN admitted_at      timestamptz;

-- The claim of unqueued runs no longer sees queued ones; they have indexes of their own.
DROP INDEX runs_claimable;
CREATE INDEX runs_claimable ON runs (wake_at)
    WHERE status IN ('pending', 'running', 'waiting') AND wake_at IS NOT NULL
      AND queue IS NULL;
-- queued runs that may start or resume, per queue
CREATE INDEX runs_queued ON runs (queue, priority, created_at)
    WHERE status IN ('pending', 'running', 'waiting') AND wake_at IS NOT NULL
      AND queue IS NOT NULL;
-- runs that hold a slot of their queue (counted at each admission)
CREATE INDEX runs_queue_slots ON runs (queue, concurrency_key)
    WHERE admitted_at IS NOT NULL AND status IN ('pending', 'running', 'waiting', 'paused');
-- starts per queue, for the rate limit's window
CREATE INDEX runs_queue_starts ON runs (queue, admitted_at) WHERE admitted_at IS NOT NULL;
-- a dedup key is taken while a run of the queue with it has not ended
CREATE UNIQUE INDEX runs_dedup ON runs (coalesce(queue, ''), dedup_key)
    WHERE dedup_key IS NOT NULL
      AND status IN ('pending', 'running', 'waiting', 'paused', 'blocked');
