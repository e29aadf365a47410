"""Explanations in the backend: ``ml.<name>_explain`` and ``ml.<name>_explain_batch``.

An explainer needs the fitted estimator (TreeSHAP walks its trees; a linear model's
coefficients), so it unpickles the version's artifact even when the version scores through a
plan: only on the first explain call in a backend, only while the version is live, and only
where a superuser allowed pickles (the rule of ``models``). The save-time data (the training
means of a linear model) is embedded in the generated functions by ``ml.deploy``, as the hex of
its JSON, and checked here (:func:`checked_data`) before it is embedded.

The numbers are the core's (``udfs.explain``), rendered as JSON by the core: Spark's
``<name>_explain`` gives the same doubles.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from udfs.errors import ConfigError, ModelNotFoundError
from udfs.postgres.server import models
from udfs.postgres.server.quoting import ident
from udfs.postgres.server.reader import Relation, block_ranges, block_where, read_chunk

EXPLAINERS_KEY = "udfs.explainers"
_ESTIMATOR = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")


def checked_data(text: str | None) -> str | None:
    """The hex of the canonical JSON of valid explain data, or None (no or unusable data).

    Only known keys with checked values survive: the generated functions embed the result.
    """
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("explainer") not in ("linear", "tree"):
        return None
    clean: dict[str, Any] = {"format": int(data.get("format", 1)), "explainer": data["explainer"]}
    estimator = data.get("estimator")
    if isinstance(estimator, str) and _ESTIMATOR.match(estimator):
        clean["estimator"] = estimator
    if data["explainer"] == "linear":
        means = data.get("means")
        if not isinstance(means, list) or not all(
            isinstance(m, int | float) and not isinstance(m, bool) and math.isfinite(m)
            for m in means
        ):
            return None
        clean["means"] = [float(m) for m in means]
    return json.dumps(clean, separators=(",", ":")).encode().hex()


def explainer(plpy: Any, GD: dict, name: str, version: int, sha256: str, data_hex: str) -> Any:
    """The explainer of ``name`` at ``version``, built once per backend from its pickle."""
    key = (name, version, sha256)
    cache = GD.setdefault(EXPLAINERS_KEY, {})
    found = cache.get(key)
    if found is not None:
        return found
    loaded = models.load(plpy, GD, name, version, sha256)
    if (loaded.version, loaded.sha256) != (version, sha256):
        raise ModelNotFoundError(
            f"model '{name}' v{version} is not the version live in this statement's snapshot "
            f"(v{loaded.version} is): it was redeployed meanwhile; run the statement again",
            model=name,
        )
    if not models.pickles_allowed(plpy):
        raise ConfigError(
            f"ml.{name}_explain needs model '{name}' v{version}'s pickled estimator (its "
            "explainer reads the fitted model, not the scoring plan), and this database does "
            "not load pickled models: unpickling runs the artifact's code as the server's OS "
            "user. A superuser can allow it with `udfs pg install --allow-pickles`",
            model=name,
        )
    from udfs.bundle import load_bytes
    from udfs.explain import explainer as make

    blob = models._live_bytes(plpy, GD, "artifact", loaded.signature)
    model = load_bytes(blob, loaded.signature)
    data = json.loads(bytes.fromhex(data_hex).decode())
    made = make(model, loaded.signature, data)
    for old in [k for k in cache if k[0] == name]:  # older versions are not called again
        del cache[old]
    cache[key] = made
    return made


def explain_row(
    plpy: Any, GD: dict, name: str, version: int, sha256: str, data_hex: str, values: list
) -> str | None:
    """One row's explanation as JSON text, None where its prediction is NULL."""
    made = explainer(plpy, GD, name, version, sha256, data_hex)
    from udfs.scoring import check_arity

    check_arity(made.signature, len(values))
    return made.json_texts([[value] for value in values])[0]


def explain_arrays(
    plpy: Any,
    GD: dict,
    name: str,
    version: int,
    sha256: str,
    data_hex: str,
    source: str,
    key_column: str | None = None,
) -> list[tuple]:
    """Rows of ``ml._explain_arrays``: (base, keys, explanations) per chunk of ``source``.

    Chunks as ``ml.<name>_batch`` reads them (``reader``); ``keys`` is a ``text[]`` literal
    (NULL without a key column: the key is then the row's position in ctid order), and
    ``explanations`` a JSON array with one explanation (or null) per row.
    """
    from udfs.postgres.server.batch import batch_chunk_rows

    made = explainer(plpy, GD, name, version, sha256, data_hex)
    relation = Relation(plpy, source)
    keys = []
    if key_column is not None:
        relation.require([key_column], "key_column")
        keys = [f"{ident(key_column)}::text"]
    out: list[tuple] = []
    base = 0
    for lo, hi in block_ranges(plpy, relation, batch_chunk_rows(plpy)):
        chunk = read_chunk(plpy, made.signature, relation, block_where(lo, hi), keys)
        if chunk.size == 0:
            continue
        texts = made.json_texts(chunk.columns)
        explanations = "[" + ",".join("null" if t is None else t for t in texts) + "]"
        out.append((base, chunk.keys[0] if keys else None, explanations))
        base += chunk.size
    return out
