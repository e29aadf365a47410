"""The udfs exception hierarchy.

Every error derives from :class:`UdfsError` and is guaranteed to pickle: Spark ships exceptions
from executors back to the driver, and PL/Python turns them into SQL errors. Structured details
(model, column, expected, value, ...) travel in ``details`` and survive pickling.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


def _rebuild(cls: type[UdfsError], message: str, details: dict[str, Any]) -> UdfsError:
    err = cls.__new__(cls)
    UdfsError.__init__(err, message, **details)
    return err


class UdfsError(Exception):
    """Root of all udfs errors. Picklable, with structured ``details``."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __reduce__(self):
        return (_rebuild, (type(self), self.message, self.details))

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes that are not set normally: expose details as attributes.
        details = self.__dict__.get("details", {})
        if name in details:
            return details[name]
        raise AttributeError(name)


class InvalidNameError(UdfsError, ValueError):
    """A model name is not a valid SQL identifier."""


class ModelNotFoundError(UdfsError, LookupError):
    """No model (or no such version) in the store or database."""


class SignatureError(UdfsError):
    """The signature cannot be inferred from the model and sample, or is malformed."""


class IntegrityError(UdfsError):
    """A model artifact does not match its recorded sha256: it was corrupted or tampered with."""


class VersionMismatchError(UdfsError):
    """The model was saved with an incompatible scikit-learn version."""


class InputError(UdfsError, ValueError):
    """A batch of feature values does not fit the model's signature (arity, type, value)."""


class ScoringError(UdfsError):
    """The model itself failed on a batch that passed the input checks."""


class ConfigError(UdfsError):
    """An engine or environment is not configured as udfs needs it."""


class VersionMismatchWarning(UserWarning):
    """The model was saved with a different patch release of a library."""


def suggest(name: str, candidates: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest candidate, or ``""``.

    >>> suggest("chrun", ["churn", "price"])
    " Did you mean 'churn'?"
    """
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
