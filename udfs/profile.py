"""The training profile: what the training sample looked like, saved as ``profile.json``.

``udfs.save_model`` computes it from ``sample`` and writes it beside ``model.json``; drift checks
(:mod:`udfs.drift`, ``ml.drift``, ``udfs.spark.drift``) compare a table with it. It is plain JSON
(no pickle) and is read only when a drift check asks for it: scoring never opens it.

Per feature, from the sample's values after the coercion scoring applies (:mod:`udfs.coercion`):

- ``double``/``bigint`` (kind ``numeric``): ``edges``, the cut points of up to 10 quantile bins
  of the non-missing values (the lower quantiles at 10%, 20%, ... 90%, i.e. values of the sample,
  deduplicated). Bin ``i`` holds ``edges[i-1] < x <= edges[i]``; the first and last bins are
  open-ended. A constant column has one edge (its value): one bin at or below it, one above. A
  column with few distinct values gets a bin per value. Infinite values fall in the end bins.
- ``string``/``boolean`` (kind ``categorical``): ``categories``, the (up to) 50 most frequent
  values as text (booleans as ``true``/``false``), and ``other``, the share of the other
  non-missing rows; ``seen``, every distinct value of the sample (NULL when there were more than
  1,000: then unseen values cannot be counted).
- ``shares``: the share of the sample's rows in each bin (or category); ``missing``: the share of
  missing values. ``sum(shares) + other + missing`` is 1.

``prediction`` is the same for the training predictions (the core's ``predict`` on the sample,
NULL where the NULL policy says so): quantile bins for a regressor, the frequency of each class
for a classifier (every class is ``seen``).

``model_sha256`` binds the profile to the artifact it was computed for: a drift check refuses a
profile of another model or version (copied or edited by hand into the wrong directory).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from udfs.coercion import Column, coerce
from udfs.errors import IntegrityError, ModelNotFoundError, SignatureError
from udfs.evaluate import class_text
from udfs.signature import Feature, Signature

PROFILE = "profile.json"
FORMAT_VERSION = 1
NUMERIC_BINS = 10
TOP_CATEGORIES = 50
SEEN_KEPT = 1000
# The name of the score's row in a drift check (no feature can be called that in SQL unquoted).
PREDICTION = "<prediction>"
NUMERIC_TYPES = ("double", "bigint")
_SPEC_KEYS = {
    "numeric": {"name", "type", "edges", "shares", "missing"},
    "categorical": {"name", "type", "categories", "seen", "shares", "other", "missing"},
}


def no_profile(name: str, version: int | None, where: str = "") -> ModelNotFoundError:
    """The error for a version saved (or uploaded) before profiles existed."""
    return ModelNotFoundError(
        f"model '{name}' v{version} has no training profile{where}: it was saved before "
        f"profiles existed. Re-save it with udfs.save_model(model, '{name}', sample=X_train) "
        "(the sample is the training data the profile is computed from)"
        + (", then deploy the new version" if where else "")
        + ", to check drift",
        model=name,
        value=version,
    )


# ------------------------------------------------------------------------------------ bins


def _present(values: np.ndarray, null: np.ndarray) -> np.ndarray:
    return np.asarray(values)[~np.asarray(null, dtype=bool)]


def category_texts(kind: str, present: np.ndarray) -> np.ndarray:
    """Non-missing values of a ``kind`` column as the texts categories are kept as."""
    if kind == "string":
        return present.astype(object)
    if kind == "boolean":
        return np.where(present.astype(bool), "true", "false").astype(object)
    if kind == "bigint":
        return present.astype(np.int64).astype(str).astype(object)
    return np.array([class_text(v) for v in present.tolist()], dtype=object)


def bin_counts(spec: dict[str, Any], values: np.ndarray, null: np.ndarray) -> tuple[Any, int]:
    """Rows per bin of ``spec`` (then, for categories, ``other``; last, missing), and the
    number of non-missing values never seen in training (0 for numbers)."""
    present = _present(values, null)
    missing = int(null.sum())
    if spec["kind"] == "numeric":
        edges = np.asarray(spec["edges"], dtype=np.float64)
        index = np.searchsorted(edges, present.astype(np.float64), side="left")
        counts = np.bincount(index, minlength=len(edges) + 1)
        return np.append(counts, missing).astype(np.int64), 0
    texts = category_texts(spec["type"], present)
    categories = pd.Index(spec["categories"], dtype=object)
    index = categories.get_indexer(texts) if len(texts) else np.empty(0, dtype=np.int64)
    index = np.where(index < 0, len(categories), index)  # "other"
    counts = np.bincount(index, minlength=len(categories) + 1)
    unseen = 0
    if spec.get("seen") is not None and len(texts):
        unseen = int((pd.Index(spec["seen"], dtype=object).get_indexer(texts) < 0).sum())
    return np.append(counts, missing).astype(np.int64), unseen


def expected_shares(spec: dict[str, Any]) -> np.ndarray:
    """The training shares of every bin ``bin_counts`` counts, in the same order."""
    other = [spec["other"]] if spec["kind"] == "categorical" else []
    return np.asarray([*spec["shares"], *other, spec["missing"]], dtype=np.float64)


def _numeric_spec(values: np.ndarray, null: np.ndarray) -> dict[str, Any]:
    present = _present(values, null).astype(np.float64)
    finite = present[np.isfinite(present)]
    edges: list[float] = []
    if finite.size:
        cuts = np.linspace(0.0, 1.0, NUMERIC_BINS + 1)[1:-1]
        edges = [float(e) for e in np.unique(np.quantile(finite, cuts, method="lower"))]
    return {"kind": "numeric", "edges": edges}


def _categorical_spec(
    kind: str, values: np.ndarray, null: np.ndarray, classes: Sequence[str] | None = None
) -> dict[str, Any]:
    if classes is not None:  # a classifier's predictions: every class a bin, in class order
        return {"kind": "categorical", "categories": list(classes), "seen": list(classes)}
    counts = pd.Series(category_texts(kind, _present(values, null))).value_counts()
    # The most frequent first; ties in text order, so the profile does not depend on row order.
    ranked = sorted(counts.items(), key=lambda item: (-int(item[1]), str(item[0])))
    distinct = [str(value) for value, _ in ranked]
    return {
        "kind": "categorical",
        "categories": distinct[:TOP_CATEGORIES],
        "seen": sorted(distinct) if len(distinct) <= SEEN_KEPT else None,
    }


def _spec(
    name: str,
    kind: str,
    values: np.ndarray,
    null: np.ndarray,
    classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The profile entry of one column: its bins and the training shares in them."""
    if classes is None and kind in NUMERIC_TYPES:
        spec = _numeric_spec(values, null)
    else:
        spec = _categorical_spec(kind, values, null, classes)
    spec = {"name": name, "type": kind, **spec}
    counts, _ = bin_counts(spec, values, null)
    rows = max(int(counts.sum()), 1)
    shares = [int(c) / rows for c in counts]
    spec["missing"] = shares.pop()
    if spec["kind"] == "categorical":
        spec["other"] = shares.pop()
    spec["shares"] = shares
    return spec


# ---------------------------------------------------------------------------------- build


def build_profile(model: Any, signature: Signature, sample: Any) -> dict[str, Any]:
    """The training profile of ``model`` from its training ``sample`` (see the module's
    docstring). ``signature`` is the one ``save_model`` writes, with the artifact's sha256."""
    from udfs import scoring
    from udfs.plan.build import sample_columns

    columns = sample_columns(sample, signature)
    features = []
    for feature, column in zip(signature.features, columns, strict=True):
        values, null = coerce(signature.name, feature, column)
        features.append(_spec(feature.name, feature.type, values, null))
    predictions = scoring.predict(model, signature, columns)
    return {
        "format_version": FORMAT_VERSION,
        "model": signature.name,
        "model_sha256": signature.sha256,
        "rows": len(predictions),
        "features": features,
        "prediction": prediction_spec(signature, predictions),
    }


def prediction_spec(signature: Signature, predictions: Column) -> dict[str, Any]:
    """The profile entry of the score: bins of the predictions (every class seen)."""
    values, null = coerce_predictions(signature, predictions)
    if not signature.is_classifier:
        return _spec(PREDICTION, "double", values, null)
    classes = [class_text(c) for c in signature.classes or ()]
    return _spec(PREDICTION, signature.label_type, values, null, classes)


def coerce_predictions(signature: Signature, predictions: Column) -> tuple[Any, Any]:
    """The core's predictions as values and NULL mask, typed as the model's label."""
    label = signature.label_type if signature.is_classifier else "double"
    return coerce(signature.name, Feature(PREDICTION, label), predictions)


def profile_json(profile: dict[str, Any]) -> str:
    """The text of ``profile.json``: strict JSON (no NaN or Infinity: jsonb refuses them)."""
    return json.dumps(profile, indent=1, allow_nan=False)


def load_profile(text: str | bytes | dict | None, signature: Signature) -> dict[str, Any]:
    """A profile read back (``profile.json`` or ``ml.models.profile``), checked against the
    model it must describe; :func:`no_profile`'s error when there is none."""
    name, version = signature.name, signature.version
    if text is None:
        raise no_profile(name, version)
    try:
        profile = json.loads(text) if isinstance(text, str | bytes) else dict(text)
        features = [f["name"] for f in profile["features"]]
        fmt = int(profile["format_version"])
        bound = profile["model_sha256"]
        specs = [*profile["features"], profile["prediction"]]
        complete = all(_SPEC_KEYS[s["kind"]] <= s.keys() for s in specs)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SignatureError(
            f"model '{name}' v{version}: malformed training profile: {exc!r}", model=name
        ) from exc
    if not complete:
        raise SignatureError(f"model '{name}' v{version}: incomplete training profile", model=name)
    if fmt > FORMAT_VERSION:
        raise SignatureError(
            f"model '{name}' v{version}: training profile format {fmt} is newer than this "
            f"udfs reads ({FORMAT_VERSION}): upgrade udfs",
            model=name,
        )
    if bound != signature.sha256:
        raise IntegrityError(
            f"model '{name}' v{version}: the training profile was computed for the model "
            f"with sha256 {bound}, not this one ({signature.sha256}); refusing a profile that "
            "belongs to another model",
            model=name,
            expected=signature.sha256,
            value=bound,
        )
    if features != signature.feature_names:
        raise IntegrityError(
            f"model '{name}' v{version}: the training profile describes features {features}, "
            f"the model takes {signature.feature_names}",
            model=name,
        )
    return profile
