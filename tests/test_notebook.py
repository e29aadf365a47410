"""notebooks/quickstart.ipynb runs top to bottom against the embedded engines."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from udfs.postgres.client.cluster import LocalCluster

pytestmark = [pytest.mark.spark, pytest.mark.postgres, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("UDFS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("UDFS_STORE", str(tmp_path / "models"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    try:
        NotebookClient(
            notebook,
            timeout=300,
            kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute()
    finally:
        LocalCluster(tmp_path / "home" / "pg").destroy()
    outputs = "".join(
        out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", [])
    )
    assert "churn@1 - age double, tenure bigint, plan string, active boolean" in outputs
    assert "5,000 of 5,000 probabilities identical in Spark, PostgreSQL and sklearn" in outputs
    assert (tmp_path / "home" / "churn_by_plan.png").stat().st_size > 1000
    assert (tmp_path / "home" / "churn_explained.png").stat().st_size > 1000
    drift_rows = [line.split() for line in outputs.splitlines() if line.split()[-1:] in (
        ["stable"], ["moderate"], ["drifted"])]  # fmt: skip
    assert {row[0]: row[-1] for row in drift_rows}["age"] == "drifted"
    assert {row[-1] for row in drift_rows if row[0] != "age"} <= {"stable", "moderate"}
