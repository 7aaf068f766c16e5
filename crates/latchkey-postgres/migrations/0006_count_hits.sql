-- Counts one hit on each of a request's rate limits inside the statement that also writes what
-- the request asked for, so that creating a challenge is one statement and needs no
-- transaction of its own.
--
-- The arrays describe one limit each and come sorted by key: two requests sharing counters then
-- lock them in the same order and never wait for each other in a cycle. `positions` is each
-- limit's place in the caller's order; the result is the place of the first limit (in that
-- order) that is exceeded, or NULL. Every counter is taken even after a refusal, so the refusal
-- named does not depend on the key order; then the block is undone, so a refused request
-- counts nothing, and the caller writes nothing either.
CREATE FUNCTION latchkey_count_hits(
    keys TEXT[],
    window_starts BIGINT[],
    expiries BIGINT[],
    limits BIGINT[],
    positions INT[]
) RETURNS INT
LANGUAGE plpgsql
AS $$
DECLARE
    refused INT;
BEGIN
    IF coalesce(cardinality(keys), 0) = 0 THEN
        RETURN NULL;
    END IF;
    BEGIN
        -- One statement for every counter, taken in the order given (the caller's keys are
        -- distinct). A concurrent hit on the same key waits for the row lock, then counts on the
        -- row the other committed: no hit is lost.
        WITH counted AS (
            INSERT INTO rate_limits AS r (key, window_start, count, expires_at)
            SELECT h.key, h.window_start, 1, h.expires_at
            FROM unnest(keys, window_starts, expiries) WITH ORDINALITY AS h(key, window_start, expires_at, i)
            ORDER BY h.i
            ON CONFLICT (key) DO UPDATE SET
                count = CASE WHEN r.window_start = EXCLUDED.window_start THEN r.count + 1 ELSE 1 END,
                window_start = EXCLUDED.window_start,
                expires_at = EXCLUDED.expires_at
            RETURNING r.key, r.count
        )
        SELECT min(l.position) INTO refused
        FROM counted JOIN unnest(keys, limits, positions) AS l(key, lim, position) ON l.key = counted.key
        WHERE counted.count > l.lim;
        IF refused IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'LK429';
        END IF;
    EXCEPTION WHEN SQLSTATE 'LK429' THEN
        -- The counters of this block are rolled back; `refused` is a variable and stays.
        RETURN refused;
    END;
    RETURN NULL;
END;
$$;
