import subprocess
import sys
from pathlib import Path

import joblib
from click.testing import CliRunner

import udfs
from tests.fixtures.models import FEATURES
from udfs.cli import cli

UDFS = str(Path(sys.executable).with_name("udfs"))


def test_help_lists_groups():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "models" in result.output and "demo" in result.output


def test_models_list_shows_models_saved_through_the_api(model_store):
    result = CliRunner().invoke(cli, ["models", "list", "--store", str(model_store)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["name", "version", "task"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["churn", "1", "binary"],
        ["plain", "1", "regression"],
        ["segment", "1", "multiclass"],
        ["spend", "1", "regression"],
    ]


def test_models_show(model_store):
    result = CliRunner().invoke(cli, ["models", "show", "churn@1", "--store", str(model_store)])
    assert result.exit_code == 0
    path, signature = result.output.split("\n", 1)
    assert path.startswith("scoring path: plan (verified bit-identical to scikit-learn")
    assert udfs.Signature.from_json(signature).feature_names == FEATURES


def test_models_register_a_joblib_file(tmp_path, trained):
    t = trained["churn"]
    joblib.dump(t.model, tmp_path / "churn.joblib")
    t.train[["id", *FEATURES]].head(50).to_csv(tmp_path / "sample.csv", index=False)
    store = tmp_path / "store"
    args = ["models", "register", str(tmp_path / "churn.joblib"), "--name", "churn"]
    result = CliRunner().invoke(
        cli, [*args, "--sample", str(tmp_path / "sample.csv"), "--store", str(store)]
    )
    assert result.exit_code == 0, result.output
    assert "saved churn@1" in result.output
    sig = udfs.load_model("churn", store=store).signature
    assert [(f.name, f.type) for f in sig.features] == [
        ("age", "double"),
        ("tenure", "bigint"),
        ("plan", "string"),
        ("active", "boolean"),
    ]


def test_errors_are_one_clear_line_and_exit_1(model_store):
    proc = subprocess.run(
        [UDFS, "models", "show", "chrun", "--store", str(model_store)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: no model named 'chrun' in store {model_store}. Did you mean 'churn'?"
    )
    assert "Traceback" not in proc.stderr
