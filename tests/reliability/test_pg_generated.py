"""Generated hostile rows through the PostgreSQL functions, against the independent oracle.

Each generated batch is one table. Every feature has a typed column and a text column; per
batch, each feature is read from one of them. ``ml.<name>(...)`` and ``ml.<name>_proba(...)``
get the text column through a SQL cast (``t_age::double precision``: Postgres parses it, and
may refuse it before udfs sees it); ``ml.<name>_batch`` reads a view that hands over the raw
text, which udfs itself must coerce. Either way the result equals the oracle on exactly what the
function received, or the error names the model and a column the oracle found bad.
"""

import io

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg2 import errors, sql
from psycopg2.extras import execute_values

import udfs
from tests.fixtures.postgres import Db
from tests.reliability.cases import CASES, same
from tests.reliability.oracle import expect
from tests.reliability.pg_support import alive, names
from tests.reliability.strategies import BY_TYPE, DEEP, DEEP_ROWS, TEXT_KEYS, depth
from udfs.demo.data import PLANS
from udfs.postgres.server.ddl import PG_TYPES

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

# Generated batches per model and method, each scored both ways (about 13 rows): 40 in CI; in
# the deep mode, with the trigger test, at least DEEP_ROWS rows in all.
EXAMPLES = depth(40, 220)
TRIGGER_EXAMPLES = depth(25, 200)
RAN: dict[str, dict[str, int]] = {}


def _no_nul(value):
    return value is None or "\x00" not in value  # Postgres text cannot hold NUL


NATIVE = {
    "double": st.one_of(
        st.floats(-1e3, 1e3),
        st.floats(allow_nan=True, allow_infinity=True),  # NaN, +-inf, huge, tiny, -0.0
        st.sampled_from([5e-324, 1.7976931348623157e308, -3.5e38, 1e-300]),
        st.none(),
    ),
    "bigint": st.one_of(st.integers(0, 150), st.integers(-(2**63), 2**63 - 1), st.none()),
    "boolean": st.one_of(st.booleans(), st.none()),
    "string": st.one_of(
        st.sampled_from([*PLANS, "platinum", "", " basic", "PRO", "é" * 10_000]),
        st.text(max_size=200).filter(_no_nul),  # unicode, empty
        st.none(),
    ),
}


# What a text column holds: numbers, words and junk, e.g. '1e400', 'NaN', ' yes ', ''.
TEXT = {
    kind: strategy.map(lambda v: None if v is None else str(v)).filter(_no_nul)
    for kind, strategy in BY_TYPE.items()
}


def _batch(signature):
    """Rows of (typed value, text value) per feature, and per feature whether to read the text."""
    cells = [st.tuples(NATIVE[f.type], TEXT[f.type]) for f in signature.features]
    rows = st.lists(st.tuples(*cells), min_size=1, max_size=12)
    texts = st.lists(st.booleans(), min_size=len(cells), max_size=len(cells))
    return st.tuples(rows, texts)


def _create(db: Db, signature) -> None:
    columns = [sql.SQL("id bigint PRIMARY KEY")]
    for f in signature.features:
        columns.append(sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(PG_TYPES[f.type])))
        columns.append(sql.SQL("{} text").format(sql.Identifier("t_" + f.name)))
    db.run("DROP TABLE IF EXISTS generated CASCADE")
    db.run(sql.SQL("CREATE TABLE generated ({})").format(sql.SQL(", ").join(columns)))


def _fill(db: Db, signature, rows, texts) -> tuple[list, list]:
    """Load one batch; return the scalar call's arguments and the batch view's raw columns."""
    db.run("TRUNCATE generated")
    with db.conn.cursor() as cur:
        flat = [(i, *[v for cell in row for v in cell]) for i, row in enumerate(rows)]
        execute_values(cur, "INSERT INTO generated VALUES %s", flat)
    args, view, raw = [], [sql.SQL("id")], []
    for j, (f, text) in enumerate(zip(signature.features, texts, strict=True)):
        native, as_text = sql.Identifier(f.name), sql.Identifier("t_" + f.name)
        pg_type = sql.SQL(PG_TYPES[f.type])
        args.append(sql.SQL("{}::{}").format(as_text, pg_type) if text else native)
        view.append(sql.SQL("{} AS {}").format(as_text if text else native, native))
        raw.append([row[j][1] if text else row[j][0] for row in rows])
    db.run("DROP VIEW IF EXISTS generated_view")
    db.run(
        sql.SQL("CREATE VIEW generated_view AS SELECT {} FROM generated").format(
            sql.SQL(", ").join(view)
        )
    )
    return args, raw


def _outcome(db: Db, query, want, name: str) -> str:
    """Run ``query``: its values equal the oracle's, or its error names model and column."""
    try:
        got = [row[-1] for row in db.rows(query)]
    except psycopg2.Error as exc:
        alive(db.conn)  # after any error, the backend still answers
        message = exc.pgerror or str(exc)
        # A UdfsError raised inside PL/Python arrives as "udfs.errors.<Class>: <message>".
        assert isinstance(exc, errors.ExternalRoutineException), f"not a udfs error: {exc!r}"
        assert message.startswith("ERROR:  udfs.errors."), message
        assert want.values is None, f"{message} but the oracle predicts {want.values}"
        assert names(message, name, want.bad_columns), (message, want.bad_columns)
        return "error"
    assert want.values is not None, f"got {got}; the oracle expects an error on {want.bad_columns}"
    assert all(same(g, w) for g, w in zip(got, want.values, strict=True)), (got, want.values)
    return "value"


@pytest.mark.parametrize(("name", "method"), CASES)
def test_postgres_matches_oracle_on_generated_rows(db: Db, model_store, name, method):
    bundle = udfs.load_model(name, store=model_store)
    sig = bundle.signature
    function = sql.Identifier(name if method == "predict" else f"{name}_proba")
    output = sql.SQL("prediction" if method == "predict" else "probability")
    batch = sql.Identifier(f"{name}_batch")
    _create(db, sig)
    seen = {"value": 0, "error": 0, "refused by a Postgres cast": 0, "rows": 0}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_batch(sig))
    def run(case):
        rows, texts = case
        args, raw = _fill(db, sig, rows, texts)
        seen["rows"] += 2 * len(rows)
        arguments = sql.SQL(", ").join(args)
        # Row at a time: the oracle sees what the function receives, after Postgres's casts.
        try:
            received = db.rows(sql.SQL("SELECT {} FROM generated ORDER BY id").format(arguments))
        except errors.DataError:  # e.g. '1e400'::double precision, 'maybe'::boolean
            alive(db.conn)
            # The call fails too: on that cast, or on a udfs error in an earlier row.
            with pytest.raises((errors.DataError, errors.ExternalRoutineException)) as caught:
                db.run(sql.SQL("SELECT ml.{}({}) FROM generated").format(function, arguments))
            alive(db.conn)
            if isinstance(caught.value, errors.ExternalRoutineException):
                assert f"udfs.errors.ScoringError: model '{name}'" in caught.value.pgerror
            seen["refused by a Postgres cast"] += 1
        else:
            columns = [[row[i] for row in received] for i in range(len(sig.features))]
            want = expect(bundle.model, sig, columns, method)
            scalar = sql.SQL("SELECT id, ml.{}({}) FROM generated ORDER BY id")
            seen[_outcome(db, scalar.format(function, arguments), want, name)] += 1
        # Vectorized: the view hands udfs the raw text of the text columns.
        want = expect(bundle.model, sig, raw, method)
        vectorized = sql.SQL(
            "SELECT key::bigint, {} FROM ml.{}('generated_view', 'id') ORDER BY 1"
        ).format(output, batch)
        seen[_outcome(db, vectorized, want, name)] += 1

    run()
    RAN[f"{name}.{method}"] = seen
    print(f"postgres generated {name}.{method}: {seen}")
    assert seen["value"] + seen["error"] + seen["refused by a Postgres cast"] == 2 * EXAMPLES
    assert seen["value"] > 0 and seen["error"] > 0, seen
    if DEEP:
        assert seen["rows"] >= DEEP_ROWS / len(CASES), seen


def _keyed_batch(signature):
    """Rows of (awkward text key, text per feature), keys distinct; and whether to COPY them."""
    cells = st.tuples(*[TEXT[f.type] for f in signature.features])
    rows = st.lists(st.tuples(TEXT_KEYS, cells), min_size=1, max_size=12, unique_by=lambda r: r[0])
    return st.tuples(rows, st.booleans())


def _csv(rows) -> io.StringIO:
    """COPY's CSV: every value quoted (so '' is empty text), NULL unquoted and empty."""
    quote = lambda v: "" if v is None else '"' + v.replace('"', '""') + '"'  # noqa: E731
    lines = [",".join(quote(v) for v in (key, *cells)) for key, cells in rows]
    return io.StringIO("".join(line + "\n" for line in lines))


@pytest.mark.parametrize("name", ["churn", "plain"])
def test_statement_trigger_matches_oracle_with_text_keys(db: Db, model_store, name):
    """INSERT or COPY into a table with an awkward text primary key and text features, under a
    statement trigger with on_error 'null': each row's score is the oracle's on that row, or
    NULL with an error in ml.scoring_errors, under the row's own key, naming a bad column."""
    bundle = udfs.load_model(name, store=model_store)
    sig = bundle.signature
    table = f"keyed_{name}"
    features = [sql.Identifier(f.name) for f in sig.features]
    db.run(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(table)))
    db.run(
        sql.SQL("CREATE TABLE {} (key text PRIMARY KEY, {}, score {})").format(
            sql.Identifier(table),
            sql.SQL(", ").join(sql.SQL("{} text").format(f) for f in features),
            sql.SQL(PG_TYPES[sig.label_type]),
        )
    )
    db.run("SELECT ml.attach_scoring_trigger(%s, %s, 'score', 'statement', 'null')", table, name)
    seen = {"value": 0, "null": 0, "error": 0, "rows": 0}

    @settings(max_examples=TRIGGER_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_keyed_batch(sig))
    def run(case):
        rows, copy = case
        db.run(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
        db.run("DELETE FROM ml.scoring_errors WHERE table_name = %s", f"public.{table}")
        with db.conn.cursor() as cur:
            if copy:
                statement = sql.SQL("COPY {} (key, {}) FROM STDIN WITH (FORMAT csv)")
                statement = statement.format(sql.Identifier(table), sql.SQL(", ").join(features))
                cur.copy_expert(statement.as_string(cur), _csv(rows))
            else:
                statement = sql.SQL("INSERT INTO {} (key, {}) VALUES %s")
                statement = statement.format(sql.Identifier(table), sql.SQL(", ").join(features))
                execute_values(cur, statement.as_string(cur), [(k, *c) for k, c in rows])
        scores = dict(db.rows(sql.SQL("SELECT key, score FROM {}").format(sql.Identifier(table))))
        failed = {
            key["key"]: error
            for key, error in db.rows(
                "SELECT key, error FROM ml.scoring_errors WHERE table_name = %s", f"public.{table}"
            )
        }
        assert set(scores) == {k for k, _ in rows}  # every key intact, each row kept
        assert set(failed) <= set(scores), (failed, scores)
        for key, cells in rows:
            want = expect(bundle.model, sig, [[v] for v in cells], "predict")
            seen["rows"] += 1
            if want.values is None:
                assert scores[key] is None and key in failed, (key, cells, scores[key])
                assert names(failed[key], name, want.bad_columns), (failed[key], want)
                seen["error"] += 1
            else:
                assert key not in failed, (key, cells, failed.get(key))
                assert same(scores[key], want.values[0]), (key, cells, scores[key], want)
                seen["value" if want.values[0] is not None else "null"] += 1

    run()
    RAN[f"trigger.{name}"] = seen
    print(f"postgres statement trigger {name}: {seen}")
    assert seen["value"] > 0 and seen["error"] > 0, seen


@pytest.mark.parametrize("value", ["3.4028235677973366e38", "-1e300"])
def test_float32_overflow_is_refused_by_the_lean_paths(db: Db, value: str) -> None:
    """A double that is finite but infinite in float32 is refused, not scored by the trees."""
    db.run("DROP TABLE IF EXISTS overflow")
    db.run(f"CREATE TABLE overflow AS SELECT 1 AS id, {value}::float8 AS age, 3::bigint AS tenure")
    for query in (
        f"SELECT ml.plain({value}::float8, 3)",
        "SELECT * FROM ml.plain_batch('overflow', 'id')",
    ):
        with pytest.raises(errors.ExternalRoutineException) as caught:
            db.run(query)
        assert names(caught.value.pgerror, "plain", {"age"}), caught.value.pgerror
        alive(db.conn)
