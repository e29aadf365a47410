"""udfs: scikit-learn models as SQL functions in Spark SQL and PostgreSQL.

>>> import udfs
>>> ref = udfs.save_model(pipeline, "churn", sample=X_train)  # doctest: +SKIP
>>> udfs.load_model("churn").predict(customers)  # doctest: +SKIP
"""

from udfs.bundle import ModelBundle
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
from udfs.store import ModelRef, list_models, load_model, save_model

__version__ = "0.1.0"

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
