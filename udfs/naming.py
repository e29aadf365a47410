"""Model names: they become SQL function names in both engines, so they must be SQL identifiers."""

from __future__ import annotations

import re

from udfs.errors import InvalidNameError

_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Postgres truncates identifiers at 63 bytes, and `<name>_proba` must still fit.
MAX_NAME_LENGTH = 63 - len("_proba")


def validate_name(name: object) -> str:
    """Return ``name`` if it is a valid model name, else raise :class:`InvalidNameError`.

    >>> validate_name("churn")
    'churn'
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidNameError(
            f"invalid model name {name!r}: a model name must start with a lowercase letter and "
            "contain only lowercase letters, digits and '_' (it becomes a SQL function name)",
            name=name,
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"invalid model name {name!r}: at most {MAX_NAME_LENGTH} characters, got {len(name)}",
            name=name,
        )
    return name


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Split ``"name@3"`` into ``("name", 3)`` and ``"name"`` into ``("name", None)``."""
    name, sep, version = ref.partition("@")
    if not sep:
        return validate_name(name), None
    if not version.isdigit() or int(version) < 1:
        raise InvalidNameError(
            f"invalid model reference {ref!r}: expected NAME or NAME@VERSION with VERSION >= 1",
            name=ref,
        )
    return validate_name(name), int(version)
