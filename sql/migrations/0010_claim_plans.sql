-- claim_queued's statements depend on its parameters only through values the planner
-- gains nothing from knowing (a queue's name, the workflows): a generic plan, made once a
-- session, instead of PL/pgSQL's default of planning each statement anew on every call.
-- Measured with no queue due: 0.45 ms a call before, 0.08 ms after.
ALTER FUNCTION claim_queued(text, integer, double precision, text[], text[], integer[])
    SET plan_cache_mode = force_generic_plan;
