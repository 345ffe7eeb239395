-- The identity of this pgdurable installation (one row per schema and database): a
-- connection a caller passes as conn= must show the same id, so a run is never created
-- in another database than the App's by mistake.
CREATE TABLE instance (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now(),
    singleton   boolean     NOT NULL DEFAULT true UNIQUE CHECK (singleton)
);
INSERT INTO instance DEFAULT VALUES;
