"""The local model store: ``<store>/<name>/<version>/{model.joblib, model.json, ...}``.

Beside the artifact and its signature, a version holds its scoring plan (if any) and the
companion files ``companions`` computes at save time (the training profile, ``profile.json``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from udfs.bundle import (
    ModelBundle,
    dump_model,
    library_versions,
    load_bytes,
    load_plan,
    now_iso,
    sha256_hex,
)
from udfs.errors import ModelNotFoundError, suggest
from udfs.naming import validate_name
from udfs.plan.format import Plan
from udfs.signature import Signature

ARTIFACT = "model.joblib"
SIGNATURE = "model.json"
STORE_ENV = "UDFS_STORE"

StorePath = str | os.PathLike[str] | None


def store_root(store: StorePath = None) -> Path:
    """The store directory: ``store``, else ``$UDFS_STORE``, else ``./models``."""
    return Path(store if store is not None else os.environ.get(STORE_ENV, "models"))


@dataclass(frozen=True)
class ModelRef:
    """Where one saved model version lives."""

    name: str
    version: int
    path: Path
    sha256: str

    @property
    def artifact_path(self) -> Path:
        return self.path / ARTIFACT

    def signature(self) -> Signature:
        return Signature.from_json((self.path / SIGNATURE).read_text())

    def profile(self) -> dict[str, Any]:
        """The training profile saved beside the artifact (``udfs.profile``), checked against
        this version's artifact; a clear error for a version saved before profiles existed."""
        from udfs.profile import PROFILE, load_profile

        path = self.path / PROFILE
        return load_profile(path.read_text() if path.is_file() else None, self.signature())

    def plan(self) -> Plan | None:
        """The verified scoring plan saved beside the artifact, or None."""
        signature = self.signature()
        if not signature.plan_sha256:
            return None
        return load_plan(Plan.load(self.path), signature)

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


def _versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(
        int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and (p / SIGNATURE).is_file()
    )


def model_names(store: StorePath = None) -> list[str]:
    """Names of the models that have at least one saved version."""
    root = store_root(store)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if _versions(p))


def resolve(name: str, version: int | None = None, store: StorePath = None) -> ModelRef:
    """Find ``name`` (latest version unless ``version``) or raise with a suggestion."""
    validate_name(name)
    root = store_root(store)
    versions = _versions(root / name)
    if not versions:
        known = model_names(store)
        raise ModelNotFoundError(
            f"no model named '{name}' in store {root}.{suggest(name, known)}"
            + ("" if known else " The store is empty: save one with udfs.save_model()."),
            model=name,
        )
    chosen = versions[-1] if version is None else version
    if chosen not in versions:
        raise ModelNotFoundError(
            f"model '{name}' has no version {chosen}; saved versions: {versions}",
            model=name,
            value=chosen,
        )
    path = root / name / str(chosen)
    signature = Signature.from_json((path / SIGNATURE).read_text())
    return ModelRef(name, chosen, path, signature.sha256 or "")


def list_models(store: StorePath = None) -> list[ModelRef]:
    """Every saved version of every model, by name then version."""
    root = store_root(store)
    return [resolve(n, v, store) for n in model_names(store) for v in _versions(root / n)]


def companions(model: Any, signature: Signature, sample: Any) -> dict[str, bytes]:
    """The files computed from the model and its training sample at save time, by file name,
    written beside ``model.json``. ``signature`` carries the artifact's sha256. Each is read
    only by whoever asks for it, never by scoring: import its module here, not above.
    """
    from udfs.explain import DATA_FILE, save_time_data
    from udfs.profile import PROFILE, build_profile, profile_json

    files = {PROFILE: profile_json(build_profile(model, signature, sample)).encode()}
    explain = save_time_data(model, signature, sample)  # None: no exact explainer
    if explain is not None:
        files[DATA_FILE] = json.dumps(explain, allow_nan=False).encode()
    return files


def save_model(
    model: Any,
    name: str,
    *,
    sample: Any,
    store: StorePath = None,
    feature_names: Sequence[str] | None = None,
    accepts_missing: bool | None = None,
) -> ModelRef:
    """Save a fitted estimator or Pipeline as the next version of ``name``.

    ``sample`` is a DataFrame (or 2-D array) of training features; it fixes the feature order
    and types. ``accepts_missing`` overrides the per-feature check of whether the model predicts
    when a feature is missing.

    >>> ref = udfs.save_model(pipeline, "churn", sample=X_train)  # doctest: +SKIP
    """
    validate_name(name)
    from udfs.infer_signature import infer_signature  # scikit-learn: only when saving

    signature = infer_signature(
        model, sample, name, feature_names=feature_names, accepts_missing=accepts_missing
    )
    from udfs.plan.build import compile_verified, sample_columns

    artifact = dump_model(model)
    plan, plan_entry = compile_verified(model, signature, sample_columns(sample, signature))
    extra = companions(model, signature.with_identity(sha256=sha256_hex(artifact)), sample)
    model_dir = store_root(store) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
    try:
        (staging / ARTIFACT).write_bytes(artifact)
        if plan is not None:
            plan.save(staging)
        for file_name, data in extra.items():
            (staging / file_name).write_bytes(data)
        for _attempt in range(100):
            version = (_versions(model_dir) or [0])[-1] + 1
            final = signature.with_identity(
                version=version,
                sha256=sha256_hex(artifact),
                libraries=library_versions(model),
                created_at=now_iso(),
                plan=plan_entry,
            )
            (staging / SIGNATURE).write_text(final.to_json())
            try:
                # rename is atomic: a concurrent save of the same name takes the next version.
                staging.rename(model_dir / str(version))
            except OSError:
                continue
            return ModelRef(name, version, model_dir / str(version), final.sha256 or "")
        raise OSError(f"could not create a new version directory under {model_dir}")
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def read_bundle_bytes(ref: ModelRef) -> tuple[bytes, Signature]:
    """The raw artifact and signature of a saved version, for shipping to an engine."""
    return ref.artifact_path.read_bytes(), ref.signature()


def ensure_plan(ref: ModelRef) -> Signature:
    """The signature of ``ref``, compiling its plan first if it was saved before plans existed.

    The training sample is not kept, so the plan is verified on generated rows (every known
    level, varied magnitudes) plus the usual edge rows. The result, a plan or the reason there
    is none, is written into the version's directory, so this runs once per version.
    """
    signature = ref.signature()
    if signature.plan is not None:
        return signature
    from udfs.plan.build import compile_verified, synthetic_columns

    model = load_bytes(ref.artifact_path.read_bytes(), signature)
    plan, entry = compile_verified(model, signature, synthetic_columns(signature))
    if plan is not None:
        plan.save(ref.path)
    updated = signature.with_identity(plan=entry)
    staged = ref.path / f".{SIGNATURE}.tmp"
    staged.write_text(updated.to_json())
    staged.replace(ref.path / SIGNATURE)  # atomic: readers see the old or the new signature
    return updated


def load_model(name: str, version: int | None = None, store: StorePath = None) -> ModelBundle:
    """Load a saved model, verifying its sha256 before unpickling, with its plan if it has one.

    >>> churn = udfs.load_model("churn"); churn.predict(customers)  # doctest: +SKIP
    """
    ref = resolve(name, version, store)
    artifact, signature = read_bundle_bytes(ref)
    return ModelBundle(load_bytes(artifact, signature), signature, ref.plan())
