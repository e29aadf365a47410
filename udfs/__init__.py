"""udfs: scikit-learn models as SQL functions in Spark SQL and PostgreSQL.

>>> import udfs
>>> ref = udfs.save_model(pipeline, "churn", sample=X_train)  # doctest: +SKIP
>>> udfs.load_model("churn").predict(customers)  # doctest: +SKIP
"""

from typing import Any

from udfs.errors import (
    ConfigError,
    InputError,
    IntegrityError,
    InvalidNameError,
    ModelNotFoundError,
    ScoringError,
    SignatureError,
    UdfsError,
    VersionMismatchError,
)
from udfs.signature import Feature, Signature

__version__ = "0.1.0"

# Imported on first use: they pull in pandas and scikit-learn, which a PostgreSQL backend
# scoring through a plan never needs (importing them would cost ~1 s per new connection).
_LAZY = {
    "ModelBundle": "udfs.bundle",
    "ModelRef": "udfs.store",
    "list_models": "udfs.store",
    "load_model": "udfs.store",
    "save_model": "udfs.store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'udfs' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ConfigError",
    "Feature",
    "InputError",
    "IntegrityError",
    "InvalidNameError",
    "ModelBundle",
    "ModelNotFoundError",
    "ModelRef",
    "ScoringError",
    "Signature",
    "SignatureError",
    "UdfsError",
    "VersionMismatchError",
    "list_models",
    "load_model",
    "save_model",
]
