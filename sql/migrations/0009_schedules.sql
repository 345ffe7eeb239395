-- Schedules: one row per declared schedule. Workers find the due ones by due_at (the next
-- tick, or sooner while ticks are buffered behind a run that has not ended), fire them and
-- move next_fire_at in one transaction; each tick's run id (name@tick) makes it once.
CREATE TABLE schedules (
    name             text             PRIMARY KEY,
    workflow         text             NOT NULL,
    cron             text,
    every_seconds    double precision CHECK (every_seconds >= 1),
    timezone         text             NOT NULL DEFAULT 'UTC',
    args             jsonb            NOT NULL DEFAULT '[]',
    overlap          text             NOT NULL DEFAULT 'skip'
        CHECK (overlap IN ('skip', 'buffer_one', 'buffer_all', 'cancel_other', 'allow_all')),
    catchup_seconds  double precision NOT NULL DEFAULT 60 CHECK (catchup_seconds >= 0),
    queue            text,
    paused           boolean          NOT NULL DEFAULT false,
    next_fire_at     timestamptz      NOT NULL,
    due_at           timestamptz      NOT NULL,
    buffered         timestamptz[]    NOT NULL DEFAULT '{}',
    last_run_id      text,
    last_fired_at    timestamptz,
    updated_at       timestamptz      NOT NULL DEFAULT now(),
    CHECK ((cron IS NULL) <> (every_seconds IS NULL))
);
CREATE INDEX schedules_due ON schedules (due_at) WHERE NOT paused;
