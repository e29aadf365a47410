"""Drift checks: how far a table's features and scores are from the training profile.

Engine-free: Postgres (``ml.drift``) and Spark (``udfs.spark.drift``) read the feature columns
in chunks (or partitions), score them through the core (the predictions of the SQL functions)
and hand both to :class:`Drift`, which only counts rows per bin of the profile
(:mod:`udfs.profile`). Counts add up, so a table of any size is checked in one pass with
little memory, and partial counts from many workers merge (:meth:`Drift.merge`).

One row per feature, in signature order, then one for the score, named ``<prediction>``
(:data:`udfs.profile.PREDICTION`: no column can be called that without quoting):

- ``psi``: the population stability index of the table against the training sample,
  ``sum((a - e) * ln(a / e))`` over the bins, where ``e`` is a bin's share of the training rows
  and ``a`` its share of the table's rows. The bins are the profile's (quantile bins of a
  number, the 50 most frequent categories plus one for all others), plus one for missing
  values, so a column that becomes NULL drifts too. An empty bin's share counts as
  :data:`EPSILON` (1e-4), in both ``a`` and ``e``: the index stays finite, and two empty bins
  add nothing.
- ``share_missing``: the share of the table's rows where the feature is NULL (for the score:
  where the prediction is NULL, a NULL feature the model cannot take);
  ``training_share_missing``: the same in the training sample.
- ``unseen_categories``: string and boolean features: the number of rows whose value never
  occurs in the training sample (NULL when the sample had more than 1,000 distinct values: the
  profile does not keep them all); 0 for numbers and for the score.
- ``verdict``: ``stable`` (PSI < 0.1), ``moderate`` (0.1 <= PSI < 0.25) or ``drifted``
  (PSI >= 0.25), the usual rule-of-thumb thresholds.

An empty table has no shares: its ``psi``, ``share_missing`` and ``verdict`` are NULL.

Values are read as scoring reads them (:mod:`udfs.coercion`): text in a number column is
parsed as PostgreSQL parses it, NaN is missing, and a value scoring refuses is refused here too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from udfs.coercion import Column, coerce
from udfs.errors import InputError
from udfs.profile import bin_counts, coerce_predictions, expected_shares
from udfs.signature import Signature

EPSILON = 1e-4
STABLE_BELOW = 0.1
DRIFTED_FROM = 0.25
COLUMNS = (
    "feature",
    "psi",
    "share_missing",
    "training_share_missing",
    "unseen_categories",
    "verdict",
)


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """The population stability index of shares ``actual`` against ``expected`` (same bins),
    an empty bin counting as :data:`EPSILON`.

    >>> round(psi([0.5, 0.5], [0.25, 0.75]), 6)
    0.274653
    """
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPSILON)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def verdict(value: float | None) -> str | None:
    """``stable`` below 0.1, ``drifted`` from 0.25, ``moderate`` between; None for None."""
    if value is None:
        return None
    if value < STABLE_BELOW:
        return "stable"
    return "moderate" if value < DRIFTED_FROM else "drifted"


class Drift:
    """Rows per profile bin of a table, chunk by chunk; the drift rows at the end.

    >>> drift = Drift(signature, profile)  # doctest: +SKIP
    >>> drift.score(batch_scorer, feature_columns)  # doctest: +SKIP
    >>> drift.rows()  # doctest: +SKIP
    [('age', 0.41, 0.0, 0.0, 0, 'drifted'), ..., ('<prediction>', ...)]
    """

    def __init__(self, signature: Signature, profile: dict[str, Any]) -> None:
        self.signature = signature
        self.specs = [*profile["features"], profile["prediction"]]
        self.counts = [np.zeros(len(expected_shares(s)), dtype=np.int64) for s in self.specs]
        self.unseen = [0] * len(self.specs)
        self.size = 0

    def score(self, scorer: Any, columns: Sequence[Column]) -> None:
        """Score one chunk's feature columns with ``scorer`` (a :class:`BatchScorer`) and add
        the chunk with its predictions."""
        predictions, _ = scorer.score(columns, proba=False)
        self.add(columns, predictions)

    def add(self, columns: Sequence[Column], predictions: Column) -> None:
        """Add one chunk: the feature columns in signature order and the core's predictions."""
        sig = self.signature
        if len(columns) != len(sig.features):
            raise InputError(
                f"model '{sig.name}' takes {len(sig.features)} features "
                f"({sig.describe_features()}), got {len(columns)} columns",
                model=sig.name,
            )
        coerced = [coerce(sig.name, f, c) for f, c in zip(sig.features, columns, strict=True)]
        coerced.append(coerce_predictions(sig, predictions))
        sizes = {len(null) for _, null in coerced}
        if len(sizes) > 1:
            raise InputError(f"model '{sig.name}': columns of different lengths {sizes}")
        for i, (spec, (values, null)) in enumerate(zip(self.specs, coerced, strict=True)):
            counts, unseen = bin_counts(spec, values, null)
            self.counts[i] += counts
            self.unseen[i] += unseen
        self.size += sizes.pop() if sizes else 0

    # ------------------------------------------------------------------ partial counts

    def state(self) -> str:
        """This accumulator's counts as JSON (what a Spark partition sends to the driver)."""
        return json.dumps(
            {"rows": self.size, "counts": [c.tolist() for c in self.counts], "unseen": self.unseen}
        )

    def merge(self, state: str) -> None:
        """Add the counts of another accumulator of the same profile (its :meth:`state`)."""
        other = json.loads(state)
        self.size += int(other["rows"])
        for i, counts in enumerate(other["counts"]):
            self.counts[i] += np.asarray(counts, dtype=np.int64)
            self.unseen[i] += int(other["unseen"][i])

    # --------------------------------------------------------------------------- output

    def rows(self) -> list[tuple[str, float | None, float | None, float, int | None, str | None]]:
        """The drift rows (see the module's docstring); NULL is None."""
        out = []
        for spec, counts, unseen in zip(self.specs, self.counts, self.unseen, strict=True):
            value = share_missing = None
            if self.size:
                shares = counts / self.size
                value, share_missing = psi(expected_shares(spec), shares), float(shares[-1])
            counted = spec["kind"] == "numeric" or spec.get("seen") is not None
            out.append(
                (
                    spec["name"],
                    value,
                    share_missing,
                    float(spec["missing"]),
                    int(unseen) if counted else None,
                    verdict(value),
                )
            )
        return out


def drift(
    signature: Signature, profile: dict[str, Any], columns: Sequence[Column], predictions: Column
) -> list[tuple]:
    """The drift rows of one batch of feature columns and the core's predictions on them."""
    accumulator = Drift(signature, profile)
    accumulator.add(columns, predictions)
    return accumulator.rows()
