"""The SQL the server side generates, built and checked without a cluster (a fake ``plpy``)."""

from __future__ import annotations

import ast
import re
from contextlib import contextmanager
from typing import Any

import pytest

from udfs.postgres.server import ddl, versions
from udfs.postgres.server.quoting import ident, literal, qualified
from udfs.signature import Feature, Signature

ODD = 'odd "name"; drop'


def _signature(name: str = "churn", task: str = "binary") -> Signature:
    return Signature(
        name=name,
        features=(Feature("age", "double"), Feature(ODD, "string")),
        task=task,
        classes=(0, 1) if task == "binary" else None,
        label_type="bigint" if task == "binary" else "double",
        has_proba=task == "binary",
    )


def _unliteral(text: str) -> str:
    """The value of a SQL string literal as ``quoting.literal`` writes it."""
    if text.startswith("E'"):
        return text[2:-1].replace("''", "'").replace("\\\\", "\\")
    return text[1:-1].replace("''", "'")


def _body(statement: str) -> str:
    match = re.search(r" AS (E?'.*')$", statement, flags=re.S)
    assert match, statement
    return _unliteral(match.group(1))


def test_quoting_round_trips_hostile_text() -> None:
    assert ident(ODD) == '"odd ""name""; drop"'
    assert qualified("my schema", "t") == '"my schema"."t"'
    for value in ["it's", "a\\b", "\\'; drop table x; --", ""]:
        assert _unliteral(literal(value)) == value
    assert literal(None) == "NULL" and literal(3) == "3" and literal(True) == "true"
    with pytest.raises(ValueError, match="NUL"):
        literal("a\x00b")


def test_every_entry_point_pins_search_path_and_its_body_compiles() -> None:
    statements = ddl.entry_point_statements()
    created = [s for s in statements if s.startswith("CREATE")]
    assert len(created) == len(ddl.ENTRY_POINTS)
    for statement in created:
        assert ddl.PINNED in statement
        body = _body(statement)
        assert body.startswith(ddl.PREAMBLE)
        ast.parse("def f():\n" + "\n".join("    " + line for line in body.splitlines()))
    grants = [s for s in statements if s.startswith("GRANT")]
    # Every entry point but the superusers' _regenerate is granted to exactly one role.
    assert len(grants) == len(ddl.ENTRY_POINTS) - 1
    assert not any("_regenerate" in g for g in grants)


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_model_functions_quote_every_name(task: str) -> None:
    statements = ddl.model_statements(_signature(task=task), 3, "a" * 64)
    created = [s for s in statements if s.startswith("CREATE")]
    names = [
        re.match(r"CREATE OR REPLACE FUNCTION ml\.(\"[^\"]+\")\(", s).group(1) for s in created
    ]
    wanted = ["churn", "churn_proba"] if task == "binary" else ["churn"]
    assert names == [f'"{n}"' for n in [*wanted, "churn_trgr", "churn_trgs", "churn_batch"]]
    scalar = created[0]
    assert '"odd ""name""; drop" text' in scalar
    assert "STABLE PARALLEL UNSAFE" in scalar and ddl.PINNED in scalar
    body = _body(scalar)
    # The cached scorer is tried before the preamble; the constants are literals.
    assert body.startswith('score = SD.get("score")')
    assert "rt.scalar_function(plpy, GD, 'churn', 3, 'aaaa" in body
    ast.parse("def f():\n" + "\n".join("    " + line for line in body.splitlines()))
    batch = created[-1]
    assert "LANGUAGE sql" in batch
    assert "ml._score_arrays('churn', source, key_column, block_from, block_to)" in _body(batch)
    for statement in statements:
        if statement.startswith(("GRANT", "REVOKE")):
            assert re.search(r'ml\."churn(_\w+)?"\(', statement), statement


def test_names_that_clash_or_shadow_are_refused() -> None:
    with pytest.raises(Exception, match="would clash with the functions of deployed model"):
        ddl.check_deployable(_signature("churn"), ["churn_proba"])
    with pytest.raises(Exception, match="reserved by udfs"):
        ddl.check_deployable(_signature("models"), [])


class FakePlpy:
    """Just enough of PL/Python's ``plpy`` for ``versions``: it records what it executes."""

    def __init__(self, tables: dict[str, list[dict]]) -> None:
        self.tables = tables
        self.executed: list[str] = []
        self.warnings: list[str] = []

    def execute(self, query: str, *_: Any) -> list[dict]:
        self.executed.append(query)
        for marker, rows in self.tables.items():
            if marker in query:
                return rows
        return []

    def prepare(self, query: str, types: list[str] | None = None) -> Any:
        plpy = self

        class Plan:
            def execute(self, args: list) -> list[dict]:
                return plpy.execute(query, args)

        return Plan()

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    @contextmanager
    def subtransaction(self):
        yield


def _pickled_version(sig: Signature) -> dict:
    return {"sha256": "b" * 64, "signature": sig.to_json(), "plan": None, "plan_sha256": None}


def test_make_live_creates_functions_before_recording_the_deployment() -> None:
    sig = _signature()
    plpy = FakePlpy(
        {
            "FROM ml.models": [_pickled_version(sig)],
            "ml._allow_pickles()": [{"allowed": True}],
            "pg_get_function_result": [
                # churn_proba once returned another type: it is dropped, churn is kept.
                {
                    "proc": "ml.churn_proba(double precision,text)",
                    "proname": "churn_proba",
                    "args": "double precision, text",
                    "returns": "double precision[]",
                },
                {
                    "proc": "ml.churn(double precision,text)",
                    "proname": "churn",
                    "args": "double precision, text",
                    "returns": "bigint",
                },
            ],
        }
    )
    assert versions.make_live(plpy, "churn", 2, "deploy") == 2
    drops = [q for q in plpy.executed if q.startswith("DROP FUNCTION")]
    assert drops == ["DROP FUNCTION ml.churn_proba(double precision,text)"]
    creates = [i for i, q in enumerate(plpy.executed) if q.startswith("CREATE")]
    record = next(i for i, q in enumerate(plpy.executed) if "INSERT INTO ml.deployments" in q)
    assert creates and max(creates) < record


def test_regenerate_skips_a_version_that_would_not_deploy_and_goes_on() -> None:
    good = _signature("churn")
    plpy = FakePlpy(
        {
            "DISTINCT ON (name)": [
                {"name": "spend", "version": 1},
                {"name": "churn", "version": 4},
            ],
            "ml._allow_pickles()": [{"allowed": False}],
            "FROM ml.models": [_pickled_version(good)],
        }
    )
    done = versions.regenerate(plpy)
    # Pickles are refused here, so neither is regenerated; both are reported, none recorded.
    assert [d.split(":")[0] for d in done] == ["spend v1", "churn v4"]
    assert len(plpy.warnings) == 2 and "does not load pickled models" in plpy.warnings[0]
    assert not any("INSERT INTO ml.deployments" in q for q in plpy.executed)
