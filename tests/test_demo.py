"""`udfs demo`, the main job, end to end on embedded defaults: twice, as a user would."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.postgres, pytest.mark.slow]

UDFS = str(Path(sys.executable).with_name("udfs"))


def _udfs(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env_free = {"UDFS_HOME", "UDFS_STORE", "PGHOST", "PGPORT", "PGDATABASE"}
    env = {k: v for k, v in os.environ.items() if k not in env_free}
    return subprocess.run(
        [UDFS, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_demo_runs_twice_with_exact_agreement(tmp_path):
    try:
        for run in (1, 2):
            proc = _udfs(tmp_path, "demo", "--rows", "3000")
            assert proc.returncode == 0, f"run {run}:\n{proc.stdout}\n{proc.stderr}"
            out = proc.stdout
            assert "Result: EXACT agreement across engines." in out
            for model in ("churn", "segment", "progression"):
                assert f"spark    {model}" in out and f"postgres {model}" in out
                assert f"{model:<12} scores through plan\n" in out  # not the pickle
            assert "1,000 rows copied into new_customers, 1,000 scored on insert" in out
            assert "Why customer 1 (" in out and "= log-odds" in out
            # The new customers are older, nothing else: ml.drift flags age, and only age.
            verdicts = dict(
                line.split()[::3] for line in out.split("ml.drift('churn', 'new_customers'):\n")[1]
                .split("\n\n")[0].splitlines()
            )  # fmt: skip
            assert verdicts == {
                "age": "drifted", "tenure": "stable", "plan": "stable", "active": "stable",
                "<prediction>": verdicts["<prediction>"],
            }  # fmt: skip
            assert 'Connect: psql "postgresql://postgres@127.0.0.1:' in out
        assert "models: churn@1, segment@1, progression@1" in out  # reused, not retrained
        assert (tmp_path / "models" / "churn" / "1" / "model.joblib").is_file()
    finally:
        down = _udfs(tmp_path, "pg", "down")
    assert down.returncode == 0, down.stderr
    status = _udfs(tmp_path, "pg", "status")
    assert status.stdout.startswith("stopped"), status.stdout
