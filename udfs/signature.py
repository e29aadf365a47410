"""The model signature: what a model takes and returns, stored as ``model.json`` beside it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from udfs.errors import SignatureError

PortableType = Literal["double", "bigint", "boolean", "string"]
Task = Literal["regression", "binary", "multiclass"]

PORTABLE_TYPES: tuple[str, ...] = ("double", "bigint", "boolean", "string")
TASKS: tuple[str, ...] = ("regression", "binary", "multiclass")
INPUT_KINDS: tuple[str, ...] = ("dataframe", "array")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Feature:
    """One model input: its name, portable type and whether a NULL may reach the model."""

    name: str
    type: PortableType
    accepts_missing: bool = False
    # String features: the levels seen in the sample, to name an unknown one in errors.
    categories: tuple[str, ...] | None = None

    def describe(self) -> str:
        return f"{self.name} {self.type}"


@dataclass(frozen=True)
class Signature:
    """Everything an engine needs to call a model without unpickling it first."""

    name: str
    features: tuple[Feature, ...]
    task: Task
    classes: tuple[Any, ...] | None = None
    # Portable type of `predict`'s result: double for regression, the classes' type otherwise.
    label_type: PortableType = "double"
    # "dataframe" when the model was fitted on named columns, "array" for a plain numpy fit.
    input_kind: str = "dataframe"
    has_proba: bool = False
    version: int | None = None
    sha256: str | None = None
    libraries: dict[str, str] = field(default_factory=dict)
    created_at: str | None = None
    format_version: int = FORMAT_VERSION
    # The scoring plan (DESIGN.md 2b): {"sha256": ..., "format_version": ...} when a verified
    # plan is saved beside the artifact, {"unsupported": "<step>: <why>"} when there is none.
    plan: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise SignatureError(f"model '{self.name}': unknown task {self.task!r}")
        if self.input_kind not in INPUT_KINDS:
            raise SignatureError(f"model '{self.name}': unknown input kind {self.input_kind!r}")
        if not self.features:
            raise SignatureError(f"model '{self.name}': a signature needs at least one feature")
        for feature in self.features:
            if feature.type not in PORTABLE_TYPES:
                raise SignatureError(
                    f"model '{self.name}': feature '{feature.name}' has type {feature.type!r}, "
                    f"expected one of {', '.join(PORTABLE_TYPES)}"
                )
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise SignatureError(f"model '{self.name}': duplicate feature names in {names}")

    @property
    def is_classifier(self) -> bool:
        return self.task != "regression"

    @property
    def accepts_missing(self) -> bool:
        """True when every feature may be NULL and still be predicted."""
        return all(f.accepts_missing for f in self.features)

    @property
    def plan_sha256(self) -> str | None:
        """The sha256 of the verified scoring plan, or None when the model has none."""
        return (self.plan or {}).get("sha256")

    def scoring_path(self) -> str:
        """``plan``, or ``sklearn: <the step with no plan>`` (``udfs models show``)."""
        if self.plan_sha256:
            return "plan"
        reason = (self.plan or {}).get("unsupported", "saved before scoring plans existed")
        return f"sklearn: {reason}"

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def describe_features(self) -> str:
        return ", ".join(f.describe() for f in self.features)

    def with_identity(self, **changes: Any) -> Signature:
        """A copy with version, sha256, libraries or created_at filled in."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["features"] = [
            {k: v for k, v in asdict(f).items() if v is not None} for f in self.features
        ]
        data["classes"] = list(self.classes) if self.classes is not None else None
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        try:
            features = tuple(
                Feature(
                    name=f["name"],
                    type=f["type"],
                    accepts_missing=bool(f.get("accepts_missing", False)),
                    categories=tuple(f["categories"]) if f.get("categories") is not None else None,
                )
                for f in data["features"]
            )
            classes = data.get("classes")
            return cls(
                name=data["name"],
                features=features,
                task=data["task"],
                classes=tuple(classes) if classes is not None else None,
                label_type=data.get("label_type", "double"),
                input_kind=data.get("input_kind", "dataframe"),
                has_proba=bool(data.get("has_proba", False)),
                version=data.get("version"),
                sha256=data.get("sha256"),
                libraries=dict(data.get("libraries") or {}),
                created_at=data.get("created_at"),
                format_version=int(data.get("format_version", FORMAT_VERSION)),
                plan=dict(data["plan"]) if data.get("plan") else None,
            )
        except (KeyError, TypeError) as exc:
            raise SignatureError(f"malformed model signature: {exc!r}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> Signature:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise SignatureError(f"model signature is not valid JSON: {exc}") from exc
