-- udfs: the `ml` schema. Run by `udfs pg install` as a superuser; safe to run again.
-- The typed model functions (ml.<name>, ml.<name>_proba, ml.<name>_batch and the trigger
-- functions) are generated per model by ml.deploy(); everything here is model-independent.

CREATE EXTENSION IF NOT EXISTS plpython3u;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ml_user') THEN
        CREATE ROLE ml_user NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ml_admin') THEN
        CREATE ROLE ml_admin NOLOGIN;
    END IF;
END
$$;
GRANT ml_user TO ml_admin;

CREATE SCHEMA IF NOT EXISTS ml;
REVOKE ALL ON SCHEMA ml FROM PUBLIC;
GRANT USAGE ON SCHEMA ml TO ml_user;

-- Where PL/Python finds udfs and scikit-learn. A table, not a GUC: any user can set a GUC, and
-- whoever controls sys.path runs code with the server's privileges.
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

CREATE TABLE IF NOT EXISTS ml.scoring_errors (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    table_name text NOT NULL,
    key jsonb,
    model text NOT NULL,
    version integer NOT NULL,
    error text NOT NULL
);

REVOKE ALL ON ml.settings, ml.models, ml.deployments, ml.scoring_errors FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON ml.models, ml.settings TO ml_admin;
GRANT SELECT ON ml.deployments, ml.scoring_errors TO ml_user;

-- Only fixed queries run with the owner's rights: SECURITY DEFINER with a pinned search_path.
CREATE OR REPLACE FUNCTION ml._artifact(model text, model_version integer)
RETURNS TABLE (artifact bytea, signature text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT m.artifact, m.signature::text FROM ml.models m
      WHERE m.name = model AND m.version = model_version $$;

-- The live version of a model: the latest deployment.
CREATE OR REPLACE FUNCTION ml._live(model text)
RETURNS TABLE (version integer, sha256 text, signature text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT d.version, d.sha256, m.signature::text
      FROM ml.deployments d JOIN ml.models m ON m.name = d.name AND m.version = d.version
      WHERE d.name = model ORDER BY d.id DESC LIMIT 1 $$;

CREATE OR REPLACE FUNCTION ml._sys_path()
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT s.value FROM ml.settings s WHERE s.key = 'sys_path' $$;

CREATE OR REPLACE FUNCTION ml._record_error(
    table_name text, key jsonb, model text, model_version integer, error text
) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ INSERT INTO ml.scoring_errors (table_name, key, model, version, error)
      VALUES (table_name, key, model, model_version, error) $$;

-- Puts the recorded environment on sys.path once per backend and caches the runtime in GD.
CREATE OR REPLACE FUNCTION ml._bootstrap()
RETURNS void
LANGUAGE plpython3u VOLATILE SET search_path = pg_catalog, pg_temp
AS $py$
if "udfs.runtime" in GD:
    return
import json, os, sys
# One BLAS/OpenMP thread per backend: set before numpy is first imported.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"
value = plpy.execute("SELECT ml._sys_path() AS value")[0]["value"]
if value is None:
    plpy.error("udfs is not installed in this database", hint="Run: udfs pg install")
for path in reversed(json.loads(value)):
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)
import udfs.postgres.runtime as rt
rt.start()
GD["udfs.runtime"] = rt
$py$;

CREATE OR REPLACE FUNCTION ml.runtime_info()
RETURNS jsonb
LANGUAGE plpython3u STABLE
AS $py$
rt = GD.get("udfs.runtime")
if rt is None:
    plpy.execute("SELECT ml._bootstrap()")
    rt = GD["udfs.runtime"]
return rt.info()
$py$;

CREATE OR REPLACE FUNCTION ml.deploy(model text, model_version integer)
RETURNS integer
LANGUAGE plpython3u VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $py$
rt = GD.get("udfs.runtime")
if rt is None:
    plpy.execute("SELECT ml._bootstrap()")
    rt = GD["udfs.runtime"]
return rt.deploy(plpy, model, model_version)
$py$;

CREATE OR REPLACE FUNCTION ml.rollback(model text)
RETURNS integer
LANGUAGE plpython3u VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $py$
rt = GD.get("udfs.runtime")
if rt is None:
    plpy.execute("SELECT ml._bootstrap()")
    rt = GD["udfs.runtime"]
return rt.rollback(plpy, model)
$py$;

-- Vectorized scoring of a table's chunks, as one array literal per output and chunk; the
-- generated ml.<name>_batch functions unnest them. STABLE: its reads use the snapshot of the
-- calling statement. The model is loaded only if its artifact matches sha256.
CREATE OR REPLACE FUNCTION ml._score_arrays(
    model text, model_version integer, sha256 text, source regclass, key_column text,
    block_from bigint, block_to bigint
) RETURNS TABLE (base bigint, keys text, predictions text, probabilities text)
LANGUAGE plpython3u STABLE SET jit = off
AS $py$
rt = GD.get("udfs.runtime")
if rt is None:
    plpy.execute("SELECT ml._bootstrap()")
    rt = GD["udfs.runtime"]
return rt.score_arrays(plpy, GD, model, model_version, sha256, source, key_column, block_from, block_to)
$py$;

CREATE OR REPLACE FUNCTION ml._score_plan(
    model text, source regclass, target text, keep_columns text[], chunk_rows integer
) RETURNS TABLE (source_table regclass, block_from bigint, block_to bigint)
LANGUAGE plpython3u VOLATILE
AS $py$
rt = GD.get("udfs.runtime")
if rt is None:
    plpy.execute("SELECT ml._bootstrap()")
    rt = GD["udfs.runtime"]
return rt.score_plan(plpy, model, source, target, keep_columns, chunk_rows)
$py$;

CREATE OR REPLACE FUNCTION ml._score_chunk(
    model text, source regclass, target text, keep_columns text[],
    block_from bigint, block_to bigint
) RETURNS bigint
LANGUAGE plpython3u VOLATILE SET jit = off
AS $py$
rt = GD.get("udfs.runtime")
if rt is None:
    plpy.execute("SELECT ml._bootstrap()")
    rt = GD["udfs.runtime"]
return rt.score_chunk(plpy, model, source, target, keep_columns, block_from, block_to)
$py$;

CREATE OR REPLACE PROCEDURE ml.score_table(
    model text, source regclass, target text, keep_columns text[] DEFAULT NULL,
    chunk_rows integer DEFAULT 50000
)
LANGUAGE plpgsql
AS $$
DECLARE
    chunk record;
BEGIN
    FOR chunk IN SELECT * FROM ml._score_plan(model, source, target, keep_columns, chunk_rows)
    LOOP
        PERFORM ml._score_chunk(model, chunk.source_table, target, keep_columns,
                                chunk.block_from, chunk.block_to);
    END LOOP;
END
$$;

-- The 5-argument form of older installs: replaced by the one with fillfactor.
DROP FUNCTION IF EXISTS ml.attach_scoring_trigger(regclass, text, text, text, text);
-- fillfactor (statement mode only): leave room in the table's pages so the write-back UPDATEs
-- are HOT (no new index entries); NULL leaves the table's storage alone.
CREATE OR REPLACE FUNCTION ml.attach_scoring_trigger(
    tbl regclass, model text, target_column text,
    mode text DEFAULT 'row', on_error text DEFAULT 'raise', fillfactor integer DEFAULT 45
) RETURNS text
LANGUAGE plpython3u VOLATILE
AS $py$
rt = GD.get("udfs.runtime")
if rt is None:
    plpy.execute("SELECT ml._bootstrap()")
    rt = GD["udfs.runtime"]
return rt.attach(plpy, tbl, model, target_column, mode, on_error, fillfactor)
$py$;

CREATE OR REPLACE FUNCTION ml.detach_scoring_trigger(tbl regclass, model text)
RETURNS void
LANGUAGE plpython3u VOLATILE
AS $py$
rt = GD.get("udfs.runtime")
if rt is None:
    plpy.execute("SELECT ml._bootstrap()")
    rt = GD["udfs.runtime"]
rt.detach(plpy, tbl, model)
$py$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ml FROM PUBLIC;
REVOKE ALL ON PROCEDURE ml.score_table(text, regclass, text, text[], integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    ml._artifact(text, integer), ml._live(text), ml._sys_path(), ml._record_error(text, jsonb, text, integer, text),
    ml._bootstrap(), ml.runtime_info(),
    ml._score_arrays(text, integer, text, regclass, text, bigint, bigint),
    ml._score_plan(text, regclass, text, text[], integer),
    ml._score_chunk(text, regclass, text, text[], bigint, bigint),
    ml.attach_scoring_trigger(regclass, text, text, text, text, integer),
    ml.detach_scoring_trigger(regclass, text)
TO ml_user;
GRANT EXECUTE ON PROCEDURE ml.score_table(text, regclass, text, text[], integer) TO ml_user;
GRANT EXECUTE ON FUNCTION ml.deploy(text, integer), ml.rollback(text) TO ml_admin;
