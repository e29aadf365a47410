-- udfs: the `ml` schema. Run by `udfs pg install` as a superuser; safe to run again.
-- The typed model functions (ml.<name>, ml.<name>_proba, ml.<name>_batch and the trigger
-- functions) are generated per model by ml.deploy(); everything here is model-independent.
--
-- Every function here pins search_path (pg_catalog first, pg_temp last): a caller's
-- search_path never decides which function or operator the server-side SQL runs.

CREATE EXTENSION IF NOT EXISTS plpython3u;

-- An `ml` schema, or anything in it, owned by a role that is not a superuser was not made by
-- udfs: its owner could replace what install creates. Refuse it instead of reusing it.
DO $$
DECLARE
    intruder text;
BEGIN
    SELECT format('%s %s is owned by %s', what, name, owner) INTO intruder FROM (
        SELECT 'schema' AS what, 'ml' AS name, r.rolname AS owner, r.rolsuper
        FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
        WHERE n.nspname = 'ml'
        UNION ALL
        SELECT 'relation', c.oid::regclass::text, r.rolname, r.rolsuper
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
        WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'ml')
        UNION ALL
        SELECT 'function', p.oid::regprocedure::text, r.rolname, r.rolsuper
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
        WHERE p.pronamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'ml')
        UNION ALL
        SELECT 'type', t.oid::regtype::text, r.rolname, r.rolsuper
        FROM pg_catalog.pg_type t JOIN pg_catalog.pg_roles r ON r.oid = t.typowner
        WHERE t.typnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'ml')
    ) o WHERE NOT o.rolsuper LIMIT 1;
    IF intruder IS NOT NULL THEN
        RAISE EXCEPTION 'udfs: refusing to install into schema ml: %, who is not a superuser', intruder
            USING HINT = 'Whoever owns objects in ml can change what every caller runs. Drop or '
                         'rename that schema (or reassign it to a superuser after checking it), '
                         'then run udfs pg install again.';
    END IF;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ml_user') THEN
        CREATE ROLE ml_user NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ml_admin') THEN
        CREATE ROLE ml_admin NOLOGIN;
    END IF;
END
$$;
GRANT ml_user TO ml_admin;

CREATE SCHEMA IF NOT EXISTS ml;
REVOKE ALL ON SCHEMA ml FROM PUBLIC;
GRANT USAGE ON SCHEMA ml TO ml_user;

-- Where PL/Python finds udfs and scikit-learn, and other server-wide switches. A table, not a
-- GUC (any user can set a GUC), written by superusers only: whoever controls sys.path runs
-- code with the server's privileges.
--   sys_path                   JSON list of directories put first on the backend's sys.path
--   errors_keep_values         'on': ml.scoring_errors also keeps the rejected value (default off)
--   errors_max_rows_per_table  the newest rows kept per table in ml.scoring_errors (default 10000)
--   allow_pickles              'on': versions without a scoring plan may be deployed and loaded,
--                              i.e. ml_admin may run pickled code as the server (default off)
CREATE TABLE IF NOT EXISTS ml.settings (
    key text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE IF NOT EXISTS ml.models (
    name text NOT NULL,
    version integer NOT NULL CHECK (version >= 1),
    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    artifact bytea NOT NULL,
    signature jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL DEFAULT session_user,
    PRIMARY KEY (name, version)
);

-- The scoring plan (DESIGN.md 2b): pickle-free data that the backend runs without unpickling
-- anything. A version without one runs its pickled artifact, only if allow_pickles is on.
ALTER TABLE ml.models ADD COLUMN IF NOT EXISTS plan bytea;
ALTER TABLE ml.models ADD COLUMN IF NOT EXISTS plan_sha256 text
    CHECK (plan_sha256 ~ '^[0-9a-f]{64}$');

-- The training profile (udfs.profile): what ml.drift compares a table with. Plain data, bound
-- to the version's artifact by the model_sha256 it records; NULL for versions saved before
-- profiles existed (ml.drift then says to re-save the model with its training sample).
ALTER TABLE ml.models ADD COLUMN IF NOT EXISTS profile jsonb;

-- What the exact explainer of a version needs besides its pickle (udfs.explain.save_time_data:
-- its kind and, for linear models, the training means of the transformed features); NULL for
-- a model without an exact explainer, which then gets no ml.<name>_explain functions.
ALTER TABLE ml.models ADD COLUMN IF NOT EXISTS explain jsonb;

-- History: the latest row per name is live. Written only by ml.deploy() and ml.rollback().
CREATE TABLE IF NOT EXISTS ml.deployments (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    version integer NOT NULL,
    sha256 text NOT NULL,
    action text NOT NULL CHECK (action IN ('deploy', 'rollback')),
    deployed_at timestamptz NOT NULL DEFAULT now(),
    deployed_by text NOT NULL DEFAULT session_user,
    FOREIGN KEY (name, version) REFERENCES ml.models (name, version)
);
-- The plan's sha256 as ml.deploy verified it: what the backend compares a loaded plan with.
ALTER TABLE ml.deployments ADD COLUMN IF NOT EXISTS plan_sha256 text;

-- Rows a scoring trigger with on_error => 'null' could not score. Readers see only the rows of
-- tables they may SELECT from; the rejected value is kept only if errors_keep_values is on.
CREATE TABLE IF NOT EXISTS ml.scoring_errors (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    table_name text NOT NULL,
    key jsonb,
    model text NOT NULL,
    version integer NOT NULL,
    error text NOT NULL
);
ALTER TABLE ml.scoring_errors ADD COLUMN IF NOT EXISTS table_oid oid;
ALTER TABLE ml.scoring_errors ADD COLUMN IF NOT EXISTS value text;
ALTER TABLE ml.scoring_errors ALTER COLUMN table_name SET DEFAULT '';
CREATE INDEX IF NOT EXISTS scoring_errors_by_table ON ml.scoring_errors (table_oid, id);

REVOKE ALL ON ml.settings, ml.models, ml.deployments, ml.scoring_errors FROM PUBLIC;
-- Older installs let ml_admin write ml.settings, and ml_user read every recorded error.
REVOKE ALL ON ml.settings, ml.scoring_errors FROM ml_admin, ml_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON ml.models TO ml_admin;
GRANT SELECT ON ml.deployments, ml.scoring_errors TO ml_user;
-- Scoring triggers run as the user whose statement fired them, so that user records the errors;
-- the policy below limits it to tables they write to that have a udfs trigger for the model.
GRANT INSERT (table_oid, key, model, version, error, value) ON ml.scoring_errors TO ml_user;

ALTER TABLE ml.scoring_errors ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS readers ON ml.scoring_errors;
CREATE POLICY readers ON ml.scoring_errors FOR SELECT TO ml_user
    USING (table_oid IS NOT NULL AND pg_catalog.has_table_privilege(table_oid, 'SELECT'));
DROP POLICY IF EXISTS recorders ON ml.scoring_errors;
CREATE POLICY recorders ON ml.scoring_errors FOR INSERT TO ml_user
    WITH CHECK (
        pg_catalog.pg_trigger_depth() > 0
        AND pg_catalog.has_table_privilege(table_oid, 'INSERT, UPDATE')
        AND EXISTS (SELECT FROM pg_catalog.pg_trigger t
                    WHERE t.tgrelid = table_oid AND t.tgname = 'ml_' || model)
    );

-- The recorded table name comes from the table's oid, never from the recorder.
CREATE OR REPLACE FUNCTION ml._scoring_errors_stamp()
RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.table_name := (SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_class c
                       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                       WHERE c.oid = NEW.table_oid);
    NEW.at := pg_catalog.clock_timestamp();
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS stamp ON ml.scoring_errors;
CREATE TRIGGER stamp BEFORE INSERT ON ml.scoring_errors
    FOR EACH ROW EXECUTE FUNCTION ml._scoring_errors_stamp();

-- Keeps the newest errors_max_rows_per_table rows of each table that just got errors.
CREATE OR REPLACE FUNCTION ml._scoring_errors_cap()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cap bigint := coalesce(
        (SELECT s.value::bigint FROM ml.settings s WHERE s.key = 'errors_max_rows_per_table'),
        10000);
BEGIN
    DELETE FROM ml.scoring_errors e
    USING (SELECT DISTINCT n.table_oid FROM ml_new_errors n) t
    WHERE e.table_oid = t.table_oid
      AND e.id <= (SELECT x.id FROM ml.scoring_errors x WHERE x.table_oid = t.table_oid
                   ORDER BY x.id DESC OFFSET cap LIMIT 1);
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS cap ON ml.scoring_errors;
CREATE TRIGGER cap AFTER INSERT ON ml.scoring_errors REFERENCING NEW TABLE AS ml_new_errors
    FOR EACH STATEMENT EXECUTE FUNCTION ml._scoring_errors_cap();

-- ml_admin's way to empty ml.scoring_errors: one table's rows, rows older than an age, or all.
CREATE OR REPLACE FUNCTION ml.purge_scoring_errors(
    tbl regclass DEFAULT NULL, older_than interval DEFAULT NULL
) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM ml.scoring_errors e
        WHERE (tbl IS NULL OR e.table_oid = tbl::oid)
          AND (older_than IS NULL OR e.at < pg_catalog.clock_timestamp() - older_than)
        RETURNING 1)
    SELECT count(*) FROM gone
$$;

-- Functions of older installs: _artifact handed any ml_user any version's bytes, _record_error
-- let it write unlimited rows, _sys_path showed it server paths.
DROP FUNCTION IF EXISTS ml._artifact(text, integer);
DROP FUNCTION IF EXISTS ml._record_error(text, jsonb, text, integer, text);
DROP FUNCTION IF EXISTS ml._sys_path();

-- The live version of a model in the calling statement's snapshot: the latest deployment.
-- (Dropped first: older installs returned no plan_sha256.)
DROP FUNCTION IF EXISTS ml._live(text);
CREATE FUNCTION ml._live(model text)
RETURNS TABLE (version integer, sha256 text, signature text, plan_sha256 text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT d.version, d.sha256, m.signature::text, d.plan_sha256
      FROM ml.deployments d JOIN ml.models m ON m.name = d.name AND m.version = d.version
      WHERE d.name = model ORDER BY d.id DESC LIMIT 1 $$;

-- The scoring plan of a version, only while it is the live one in the caller's snapshot.
CREATE OR REPLACE FUNCTION ml._live_plan(model text, model_version integer, sha256 text)
RETURNS bytea
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT m.plan FROM ml._live(model) l
      JOIN ml.models m ON m.name = model AND m.version = l.version
      WHERE l.version = model_version AND l.sha256 = _live_plan.sha256 $$;

-- The training profile of a version, only while it is the live one in the caller's snapshot
-- (ml.drift runs as its caller, who cannot read ml.models).
CREATE OR REPLACE FUNCTION ml._live_profile(model text, model_version integer, sha256 text)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT m.profile FROM ml._live(model) l
      JOIN ml.models m ON m.name = model AND m.version = l.version
      WHERE l.version = model_version AND l.sha256 = _live_profile.sha256 $$;

CREATE OR REPLACE FUNCTION ml._allow_pickles()
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce((SELECT s.value = 'on' FROM ml.settings s
                       WHERE s.key = 'allow_pickles'), false) $$;

-- The bytes of a model version, only while it is the live one in the caller's snapshot: an
-- uploaded but never deployed (or no longer live) version is never handed out.
CREATE OR REPLACE FUNCTION ml._live_artifact(model text, model_version integer, sha256 text)
RETURNS bytea
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT m.artifact FROM ml._live(model) l
      JOIN ml.models m ON m.name = model AND m.version = l.version
      WHERE l.version = model_version AND l.sha256 = _live_artifact.sha256 $$;

CREATE OR REPLACE FUNCTION ml._keep_error_values()
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce((SELECT s.value = 'on' FROM ml.settings s
                       WHERE s.key = 'errors_keep_values'), false) $$;

-- Puts the recorded environment on sys.path once per backend and keeps the server side's entry
-- points (udfs.postgres.server.entry) in GD.
-- SECURITY DEFINER: it reads ml.settings, which callers cannot.
CREATE OR REPLACE FUNCTION ml._bootstrap()
RETURNS void
LANGUAGE plpython3u VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $py$
if "udfs.server" in GD:
    return
import json, sys
rows = plpy.execute("SELECT s.value FROM ml.settings s WHERE s.key = 'sys_path'")
if not rows:
    plpy.error("udfs is not installed in this database", hint="Run: udfs pg install")
for path in reversed(json.loads(rows[0]["value"])):
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)
# Its first import limits BLAS/OpenMP to one thread (udfs.threads), before numpy's.
import udfs.postgres.server.entry as rt
GD["udfs.server"] = rt
$py$;

-- The PL/Python entry points (ml.runtime_info, ml.deploy, ml.rollback, ml._score_arrays,
-- ml._score_plan, ml._score_chunk, ml.attach_scoring_trigger, ml.detach_scoring_trigger,
-- ml.evaluate, ml.drift) and
-- their grants come next, generated by udfs.postgres.server.ddl.entry_point_statements(); so
-- do the functions of each model version, with the same preamble.

-- Forms of older schemas, whose arguments changed (CREATE OR REPLACE cannot change them).
DROP FUNCTION IF EXISTS ml._score_arrays(text, integer, text, regclass, text, bigint, bigint);
DROP FUNCTION IF EXISTS ml._score_plan(text, regclass, text, text[], integer);
DROP FUNCTION IF EXISTS ml._score_chunk(text, regclass, text, text[], bigint, bigint);
DROP FUNCTION IF EXISTS ml.attach_scoring_trigger(regclass, text, text, text, text);

DROP PROCEDURE IF EXISTS ml.score_table(text, regclass, text, text[], integer);
-- current_schema() in a default is evaluated by the caller, with the caller's search_path:
-- an unqualified target goes where the caller's own CREATE TABLE would put it.
CREATE OR REPLACE PROCEDURE ml.score_table(
    model text, source regclass, target text, keep_columns text[] DEFAULT NULL,
    chunk_rows integer DEFAULT 50000, target_schema text DEFAULT current_schema()
)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chunk record;
BEGIN
    FOR chunk IN SELECT * FROM ml._score_plan(model, source, target, keep_columns, chunk_rows,
                                              target_schema)
    LOOP
        PERFORM ml._score_chunk(model, chunk.source_table, target, keep_columns,
                                chunk.block_from, chunk.block_to, target_schema);
    END LOOP;
END
$$;

-- Functions generated by older versions (per-model functions deployed before search_path was
-- pinned) get the same setting, so no function in ml runs with its caller's search_path.
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS proc, p.prokind FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = 'ml'::regnamespace AND p.prokind IN ('f', 'p')
               AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
    LOOP
        EXECUTE format('ALTER %s %s SET search_path = pg_catalog, pg_temp',
                       CASE f.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, f.proc);
    END LOOP;
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ml FROM PUBLIC;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA ml FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    ml._live(text), ml._live_artifact(text, integer, text), ml._live_plan(text, integer, text),
    ml._live_profile(text, integer, text), ml._allow_pickles(), ml._keep_error_values(),
    ml._bootstrap()
TO ml_user;
GRANT EXECUTE ON PROCEDURE ml.score_table(text, regclass, text, text[], integer, text) TO ml_user;
GRANT EXECUTE ON FUNCTION ml.purge_scoring_errors(regclass, interval) TO ml_admin;
