"""A model bundle: the pickled estimator, its scoring plan and its signature, each verified.

scikit-learn and joblib are imported only where a pickle is written or read: a Spark or
PL/Python worker that runs a scoring plan never imports them (about 2 s per new worker).
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import platform
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

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
# Libraries whose estimators a model may hold (e.g. as a Pipeline's last step). Their versions
# are recorded when the model uses them, and checked at load like scikit-learn's.
MODEL_LIBRARIES: tuple[str, ...] = ("xgboost", "lightgbm")
# The libraries check_versions compares, in this order.
CHECKED_LIBRARIES: tuple[str, ...] = ("scikit-learn", *MODEL_LIBRARIES)
# Fitted attributes that hold further estimators (the rest are found through get_params).
_NESTED = ("steps", "transformers_", "estimators_", "estimator_", "named_estimators_",
           "calibrated_classifiers_", "best_estimator_", "final_estimator_")  # fmt: skip


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def library_versions(model: Any = None) -> dict[str, str]:
    """The versions recorded in a signature and compared when a model is loaded.

    With ``model``, also the version of each of :data:`MODEL_LIBRARIES` that it uses.
    """
    versions = {
        "python": platform.python_version(),
        "scikit-learn": installed_version("scikit-learn"),
        "numpy": np.__version__,
        "joblib": installed_version("joblib"),
        "pandas": pd.__version__,
    }
    for library in sorted(model_libraries(model)) if model is not None else ():
        installed = installed_version(library)
        if installed:
            versions[library] = installed
    return versions


def model_libraries(model: Any) -> set[str]:
    """Which of :data:`MODEL_LIBRARIES` the estimators in ``model`` come from.

    Walks Pipelines, ColumnTransformers, ensembles and wrappers: every estimator parameter
    (``get_params(deep=False)``) and the fitted estimators they hold.
    """
    found: set[str] = set()
    seen: set[int] = set()

    def visit(obj: Any, depth: int) -> None:
        if obj is None or depth > 64 or id(obj) in seen or isinstance(obj, str | bytes | type):
            return
        seen.add(id(obj))
        root = type(obj).__module__.split(".")[0]
        if root in MODEL_LIBRARIES:
            found.add(root)
        if isinstance(obj, list | tuple):
            for item in obj:
                visit(item, depth + 1)
            return
        if isinstance(obj, dict):
            for item in obj.values():
                visit(item, depth + 1)
            return
        if not hasattr(obj, "get_params"):
            return
        try:
            params = list(obj.get_params(deep=False).values())
        except Exception:  # a broken third-party get_params: look at the fitted parts only
            params = []
        for name in _NESTED:
            try:
                params.append(getattr(obj, name, None))
            except Exception:
                continue
        for item in params:
            visit(item, depth + 1)

    visit(model, 0)
    return found


def installed_version(library: str) -> str | None:
    """The installed version of ``library`` (a module name), or None when it is missing."""
    if library == "scikit-learn":
        library = "sklearn"  # its module name; imported here, not at the top (see module doc)
    try:
        module = importlib.import_module(library)
    except ImportError:
        return None
    return str(getattr(module, "__version__", "")) or None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def dump_model(model: Any) -> bytes:
    """Serialize an estimator with joblib into bytes."""
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def check_versions(signature: Signature) -> None:
    """Refuse a model saved with another minor release of scikit-learn, or of XGBoost or
    LightGBM when the model uses them; warn on another patch release.

    These libraries do not promise that pickles load across releases, and a model that loads
    may still predict differently, so a minor mismatch (or the library missing) is an error
    unless explicitly allowed with ``UDFS_ALLOW_VERSION_MISMATCH=1``.
    """
    for library in CHECKED_LIBRARIES:
        saved = signature.libraries.get(library)
        if not saved:
            continue
        installed = installed_version(library)
        if saved == installed:
            continue
        message = (
            f"model '{signature.name}' v{signature.version} was saved with {library} {saved}, "
            + (f"but {installed} is installed" if installed else f"but {library} is not installed")
        )
        refused = installed is None or _minor(saved) != _minor(installed)
        if refused and os.environ.get(ALLOW_MISMATCH_ENV) != "1":
            raise VersionMismatchError(
                f"{message}: re-save the model with this version, or install {library}=={saved} "
                f"(set {ALLOW_MISMATCH_ENV}=1 to load it anyway)",
                model=signature.name,
                expected=installed,
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
    import joblib
    import sklearn.exceptions

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
