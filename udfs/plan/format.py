"""The plan as data: a JSON spec plus named numeric arrays, saved and shipped without pickle.

On disk a plan is ``plan.json`` + ``plan.npz`` (``np.savez``, read back with
``allow_pickle=False``). As one blob (for a bytea column or a Spark broadcast) it is::

    b"UDFSPLAN" | uint32 little-endian header length | header JSON (utf-8) | npz bytes

The sha256 is taken over the canonical form: the spec as sorted, compact JSON, then each array
(sorted by name) as its name, dtype, shape and C-ordered bytes. Object arrays are refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from udfs.errors import IntegrityError, UdfsError
from udfs.plan.base import PLAN_FORMAT_VERSION

MAGIC = b"UDFSPLAN"
SPEC_FILE = "plan.json"
ARRAYS_FILE = "plan.npz"


# What a truncated or corrupted npz raises while it is read.
_UNREADABLE = (ValueError, EOFError, KeyError, zipfile.BadZipFile)


class PlanFormatError(UdfsError, ValueError):
    """A plan cannot be read: wrong format version, truncated or not a plan."""


def _canonical_json(spec: dict[str, Any]) -> bytes:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True)
class Plan:
    """A compiled model: ``spec`` (JSON-able dict) and ``arrays`` (name -> numeric ndarray)."""

    spec: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, array in self.arrays.items():
            if not isinstance(array, np.ndarray) or array.dtype.hasobject:
                raise PlanFormatError(f"plan array {name!r} must be a numeric ndarray")
        version = self.spec.get("format_version")
        if version != PLAN_FORMAT_VERSION:
            raise PlanFormatError(
                f"scoring plan format version {version!r} is not supported by this udfs "
                f"(it reads version {PLAN_FORMAT_VERSION}); recompile the plan from the model"
            )

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256(_canonical_json(self.spec))
        for name in sorted(self.arrays):
            array = np.ascontiguousarray(self.arrays[name])
            digest.update(f"\n{name}|{array.dtype.str}|{array.shape}\n".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()

    def _npz(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **{name: self.arrays[name] for name in sorted(self.arrays)})
        return buffer.getvalue()

    def save(self, directory: str | Path) -> Path:
        """Write ``plan.json`` and ``plan.npz`` into ``directory``; return the directory."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        document = {"sha256": self.sha256, "spec": self.spec}
        (path / SPEC_FILE).write_text(json.dumps(document, indent=1, sort_keys=True))
        (path / ARRAYS_FILE).write_bytes(self._npz())
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Plan:
        """Read a plan saved by :meth:`save`, checking its format version and sha256."""
        path = Path(directory)
        try:
            document = json.loads((path / SPEC_FILE).read_text())
            arrays = _read_npz((path / ARRAYS_FILE).read_bytes())
        except (OSError, *_UNREADABLE) as exc:
            raise PlanFormatError(f"cannot read the scoring plan in {path}: {exc}") from exc
        return cls._checked(document, arrays, str(path))

    def to_bytes(self) -> bytes:
        """The plan as one blob (see the module docstring)."""
        header = json.dumps({"sha256": self.sha256, "spec": self.spec}, sort_keys=True).encode()
        return MAGIC + struct.pack("<I", len(header)) + header + self._npz()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Plan:
        """Read a blob written by :meth:`to_bytes`, checking its format version and sha256."""
        blob = bytes(blob)
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
            raise PlanFormatError("not a udfs scoring plan (bad magic bytes)")
        (size,) = struct.unpack_from("<I", blob, len(MAGIC))
        start = len(MAGIC) + 4
        try:
            document = json.loads(blob[start : start + size])
            arrays = _read_npz(blob[start + size :])
        except _UNREADABLE as exc:
            raise PlanFormatError(f"cannot read the scoring plan blob: {exc}") from exc
        return cls._checked(document, arrays, "blob")

    @classmethod
    def _checked(cls, document: dict, arrays: dict[str, np.ndarray], where: str) -> Plan:
        if not isinstance(document, dict) or "spec" not in document:
            raise PlanFormatError(f"scoring plan {where}: no spec")
        plan = cls(spec=document["spec"], arrays=arrays)  # checks the format version
        if document.get("sha256") != plan.sha256:
            raise IntegrityError(
                f"scoring plan {where}: its content does not match its sha256 "
                f"(recorded {document.get('sha256')}, computed {plan.sha256})"
            )
        return plan


def _read_npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}
