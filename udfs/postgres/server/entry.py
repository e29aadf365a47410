"""The entry points of the server side: what the ``ml`` functions' PL/Python bodies call.

This package runs inside a PostgreSQL backend with the server's python3. It imports the udfs
core and numpy, never psycopg2. ``ml._bootstrap()`` imports this module once per backend and
keeps it in ``GD``; ``plpy``, ``GD`` and ``TD`` are handed in by each function body, so
nothing here depends on being imported from PL/Python.

Each entry point finds the model version its statement scores with (``models``) and hands it
to the module that does the job: ``batch`` (``ml.<name>_batch``, ``ml.score_table``),
``triggers``, ``versions`` (``ml.deploy``/``ml.rollback``, generating the functions with
``ddl``).
"""

from __future__ import annotations

from udfs.threads import limit_this_process

limit_this_process()  # before numpy is imported below

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

from udfs.postgres.server import models  # noqa: E402

# ``batch``, ``triggers`` and ``versions`` are imported by the entry points that use them: they
# pull in pandas, which a backend that only scores rows through a plan never needs (importing
# it would add ~0.3 s to the first call of every new connection).

# Where ``ml._bootstrap()`` keeps this module in ``GD``; the generated bodies read it.
GD_KEY = "udfs.server"


def info(paths: bool = False) -> str:
    """Versions seen inside the backend, as JSON (``ml.runtime_info()``).

    ``paths``: also where udfs was imported from (shown to superusers only: server paths help
    an attacker more than a user).
    """
    from importlib.metadata import version

    import numpy as np

    import udfs

    # Versions from the installed metadata: reporting them must not import scikit-learn or
    # pandas into a backend that scores through plans and never needs them.
    seen = {
        "python": sys.version.split()[0],
        "scikit-learn": version("scikit-learn"),
        "numpy": np.__version__,
        "pandas": version("pandas"),
        "udfs": udfs.__version__,
        "threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    if paths:
        seen["udfs_path"] = os.path.dirname(udfs.__file__)
    return json.dumps(seen)


def scalar_function(
    plpy: Any, GD: dict, name: str, version: int, sha256: str, method: str
) -> tuple[Any, bool]:
    """The row scorer method ``ml.<name>``/``ml.<name>_proba`` call, and whether it is their own.

    Only a function's own version may be kept across calls (in its SD): one that a statement's
    older snapshot chose instead serves this statement only.
    """
    loaded = models.cached(GD, name, version, sha256) or models.statement_version(plpy, GD, name)
    own = (loaded.version, loaded.sha256) == (version, sha256)
    return getattr(loaded.rows, method), own


def score_arrays(plpy: Any, GD: dict, name: str, *args: Any) -> list:
    """``ml._score_arrays``: what ``ml.<name>_batch`` unnests, one row per chunk."""
    from udfs.postgres.server import batch

    return batch.score_arrays(plpy, models.statement_version(plpy, GD, name), *args)


def score_plan(plpy: Any, GD: dict, name: str, *args: Any) -> list:
    """``ml._score_plan``: create the target of ``ml.score_table``; return its chunks."""
    from udfs.postgres.server import batch

    return batch.create_target(plpy, models.live_signature(plpy, GD, name), *args)


def score_chunk(plpy: Any, GD: dict, name: str, *args: Any) -> int:
    """``ml._score_chunk``: score one chunk of ``ml.score_table`` into its target."""
    from udfs.postgres.server import batch

    return batch.score_chunk(plpy, models.statement_version(plpy, GD, name), *args)


def attach(plpy: Any, GD: dict, tbl: str, name: str, *args: Any) -> str:
    """``ml.attach_scoring_trigger``."""
    from udfs.postgres.server import triggers

    return triggers.attach(plpy, tbl, models.live_signature(plpy, GD, name), *args)


def detach(plpy: Any, tbl: str, name: str) -> None:
    """``ml.detach_scoring_trigger``."""
    from udfs.postgres.server import triggers

    triggers.detach(plpy, tbl, name)


def row_trigger(plpy: Any, GD: dict, TD: dict, name: str, version: int, sha256: str) -> str:
    """``ml.<name>_trgr``: the BEFORE row trigger."""
    from udfs.postgres.server import triggers

    return triggers.on_row(plpy, TD, models.load(plpy, GD, name, version, sha256))


def statement_trigger(plpy: Any, GD: dict, TD: dict, name: str, version: int, sha256: str) -> None:
    """``ml.<name>_trgs``: the AFTER INSERT statement trigger."""
    from udfs.postgres.server import triggers

    triggers.on_statement(plpy, TD, models.load(plpy, GD, name, version, sha256))


def evaluate(plpy: Any, GD: dict, name: str, source: str, label_column: str) -> list:
    """``ml.evaluate``: (metric, value) rows of the live version on a labelled table."""
    from udfs.postgres.server import evaluate

    loaded = models.statement_version(plpy, GD, name)
    return evaluate.evaluate(plpy, loaded, source, label_column)


def drift(plpy: Any, GD: dict, name: str, source: str) -> list:
    """``ml.drift``: the live version's drift rows on a table (``udfs.drift``)."""
    from udfs.postgres.server import drift

    return drift.drift(plpy, GD, models.statement_version(plpy, GD, name), source)


def explain_row(
    plpy: Any, GD: dict, name: str, version: int, sha256: str, data: str, values: list
) -> str | None:
    """``ml.<name>_explain(features...)``: one row's explanation as JSON, or NULL."""
    from udfs.postgres.server import explain

    return explain.explain_row(plpy, GD, name, version, sha256, data, values)


def explain_arrays(plpy: Any, GD: dict, name: str, *args: Any) -> list:
    """``ml._explain_arrays``: what ``ml.<name>_explain_batch`` unnests, one row per chunk."""
    from udfs.postgres.server import explain

    return explain.explain_arrays(plpy, GD, name, *args)


def deploy(plpy: Any, name: str, version: int) -> int:
    """``ml.deploy(name, version)``: make an uploaded version live."""
    from udfs.postgres.server import versions

    return versions.make_live(plpy, name, version, "deploy")


def rollback(plpy: Any, name: str) -> int:
    """``ml.rollback(name)``: make the version live before the current one live again."""
    from udfs.postgres.server import versions

    return versions.roll_back(plpy, name)


def regenerate(plpy: Any) -> list[str]:
    """``ml._regenerate()``: recreate the functions of every live model (after an upgrade)."""
    from udfs.postgres.server import versions

    return versions.regenerate(plpy)
