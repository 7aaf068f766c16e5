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
    counted BIGINT;
BEGIN
    IF coalesce(cardinality(keys), 0) = 0 THEN
        RETURN NULL;
    END IF;
    BEGIN
        FOR i IN 1 .. cardinality(keys) LOOP
            -- A concurrent hit on the same key waits for the row lock, then counts on the row the
            -- other committed: no hit is lost.
            INSERT INTO rate_limits AS r (key, window_start, count, expires_at)
            VALUES (keys[i], window_starts[i], 1, expiries[i])
            ON CONFLICT (key) DO UPDATE SET
                count = CASE WHEN r.window_start = EXCLUDED.window_start THEN r.count + 1 ELSE 1 END,
                window_start = EXCLUDED.window_start,
                expires_at = EXCLUDED.expires_at
            RETURNING count INTO counted;
            IF counted > limits[i] AND (refused IS NULL OR positions[i] < refused) THEN
                refused := positions[i];
            END IF;
        END LOOP;
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
