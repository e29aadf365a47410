"""``ml.drift(model, source)``: the table's drift from the live version's training profile.

The table is read in the chunks of ``ml.<name>_batch`` (ranges of heap blocks, one query per
chunk through ``reader``), each chunk scored through the batch scorer of ``ml.<name>_batch``,
and only its rows per profile bin are kept (``udfs.drift``): memory does not grow with the
table. The function runs as its caller (it is not SECURITY DEFINER), so it reads only tables
the caller may SELECT from; the profile comes from ``ml._live_profile``, which hands out the
profile of the version live in the statement's snapshot only, as the plan and artifact are.
"""

from __future__ import annotations

from typing import Any

from udfs.drift import Drift
from udfs.postgres.server.batch import batch_chunk_rows
from udfs.postgres.server.models import Loaded, prepared
from udfs.postgres.server.reader import Relation, block_ranges, block_where, read_chunk
from udfs.profile import load_profile, no_profile


def live_profile(plpy: Any, GD: dict, loaded: Loaded) -> dict[str, Any]:
    """The training profile of the loaded (live) version, checked against its artifact."""
    query = "SELECT ml._live_profile($1, $2, $3)::text AS profile"
    plan = prepared(plpy, GD, "udfs.plan.profile", query, ["text", "integer", "text"])
    text = plan.execute([loaded.name, loaded.version, loaded.sha256])[0]["profile"]
    if text is None:
        raise no_profile(loaded.name, loaded.version, " in this database")
    return load_profile(text, loaded.signature)


def drift(plpy: Any, GD: dict, loaded: Loaded, source: str) -> list[tuple]:
    """The rows of ``ml.drift`` (see ``udfs.drift``)."""
    accumulator = Drift(loaded.signature, live_profile(plpy, GD, loaded))
    relation = Relation(plpy, source)
    for lo, hi in block_ranges(plpy, relation, batch_chunk_rows(plpy)):
        chunk = read_chunk(plpy, loaded.signature, relation, block_where(lo, hi), ordered=False)
        if chunk.size:
            accumulator.score(loaded.batch, chunk.columns)
    return accumulator.rows()
