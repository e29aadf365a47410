"""A model bundle: the pickled estimator, its scoring plan and its signature, each verified."""

from __future__ import annotations

import hashlib
import io
import os
import platform
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn

from udfs import scoring
from udfs.coercion import Column
from udfs.errors import (
    InputError,
    IntegrityError,
    VersionMismatchError,
    VersionMismatchWarning,
    suggest,
)
from udfs.plan.format import Plan
from udfs.signature import Signature

# Set to 1 to load a model saved with another scikit-learn minor release (at your own risk).
ALLOW_MISMATCH_ENV = "UDFS_ALLOW_VERSION_MISMATCH"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def library_versions() -> dict[str, str]:
    """The versions recorded in a signature and compared when a model is loaded."""
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
        "pandas": pd.__version__,
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def dump_model(model: Any) -> bytes:
    """Serialize an estimator with joblib into bytes."""
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def check_versions(signature: Signature) -> None:
    """Refuse a model saved with another scikit-learn minor release; warn on another patch.

    scikit-learn does not promise that pickles load across releases, and a model that loads
    may still predict differently, so a minor mismatch is an error unless explicitly allowed.
    """
    saved = signature.libraries.get("scikit-learn")
    if not saved or saved == sklearn.__version__:
        return
    message = (
        f"model '{signature.name}' v{signature.version} was saved with scikit-learn {saved}, "
        f"but {sklearn.__version__} is installed"
    )
    if _minor(saved) != _minor(sklearn.__version__) and os.environ.get(ALLOW_MISMATCH_ENV) != "1":
        raise VersionMismatchError(
            f"{message}: re-save the model with this version, or install scikit-learn=={saved} "
            f"(set {ALLOW_MISMATCH_ENV}=1 to load it anyway)",
            model=signature.name,
            expected=sklearn.__version__,
            value=saved,
        )
    warnings.warn(f"{message}; loading it anyway", VersionMismatchWarning, stacklevel=3)


def load_bytes(artifact: bytes, signature: Signature) -> Any:
    """Unpickle ``artifact`` only after its sha256 matches the signature's."""
    actual = sha256_hex(artifact)
    if actual != signature.sha256:
        raise IntegrityError(
            f"model '{signature.name}' v{signature.version}: artifact sha256 is {actual}, "
            f"expected {signature.sha256}; refusing to load a corrupted or tampered model",
            model=signature.name,
            expected=signature.sha256,
            value=actual,
        )
    check_versions(signature)
    with warnings.catch_warnings():
        # Already reported above by check_versions, with the model's name.
        warnings.filterwarnings(
            "ignore",
            category=getattr(sklearn.exceptions, "InconsistentVersionWarning", UserWarning),
        )
        return joblib.load(io.BytesIO(artifact))


def load_plan(plan: Plan, signature: Signature) -> Plan:
    """``plan`` if its sha256 is the one the signature recorded when it was verified."""
    if plan.sha256 != signature.plan_sha256:
        raise IntegrityError(
            f"model '{signature.name}' v{signature.version}: scoring plan sha256 is "
            f"{plan.sha256}, expected {signature.plan_sha256}; refusing a corrupted or "
            "tampered plan",
            model=signature.name,
            expected=signature.plan_sha256,
            value=plan.sha256,
        )
    return plan


@dataclass(frozen=True)
class ModelBundle:
    """A loaded model with its signature: ``.predict(df)``, ``.predict_proba(df)``.

    ``model`` is the scikit-learn estimator (None where only the plan was loaded); ``plan`` the
    verified scoring plan, if the model has one. Predictions go through ``scorer``: the plan
    when there is one (bit-identical and faster), else the estimator.
    """

    model: Any
    signature: Signature
    plan: Plan | None = None

    @property
    def name(self) -> str:
        return self.signature.name

    @cached_property
    def scorer(self) -> Any:
        """What ``udfs.scoring`` calls: the plan's runner, else the estimator."""
        if self.plan is None:
            return self.model
        from udfs.plan.execute import PlanRunner

        return PlanRunner(self.plan, self.signature)

    def columns_of(self, data: pd.DataFrame | Sequence[Column]) -> list[Column]:
        """The feature columns, by name from a DataFrame or positionally from a sequence."""
        if not isinstance(data, pd.DataFrame):
            return list(data)
        missing = [n for n in self.signature.feature_names if n not in data.columns]
        if missing:
            first = missing[0]
            raise InputError(
                f"model '{self.name}' needs column '{first}' ({len(missing)} missing: {missing}); "
                f"the DataFrame has {list(data.columns)}.{suggest(first, map(str, data.columns))}",
                model=self.name,
                column=first,
            )
        return [data[n] for n in self.signature.feature_names]

    def predict(self, data: pd.DataFrame | Sequence[Column]) -> pd.Series:
        """Predict with the udfs semantics (types, NULL policy) that SQL uses.

        >>> bundle.predict(customers)  # doctest: +SKIP
        """
        result = scoring.predict(self.scorer, self.signature, self.columns_of(data))
        return self._indexed(result, data)

    def predict_proba(self, data: pd.DataFrame | Sequence[Column]) -> pd.Series:
        """P(classes[1]) for binary models, a list of probabilities for multiclass."""
        result = scoring.predict_proba(self.scorer, self.signature, self.columns_of(data))
        return self._indexed(result, data)

    @staticmethod
    def _indexed(result: pd.Series, data: Any) -> pd.Series:
        if isinstance(data, pd.DataFrame):
            result.index = data.index
        return result
