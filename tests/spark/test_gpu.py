"""GPU-aware configuration and device selection, verified without a GPU."""

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import udfs
from tests.fixtures.models import FEATURES, expected
from udfs import scoring
from udfs.cli import cli
from udfs.demo.data import customers
from udfs.errors import ConfigError
from udfs.spark import device
from udfs.spark.gpu import DISCOVERY_SCRIPT, RAPIDS_CONF, discover, executor_cores, gpu_conf
from udfs.spark.session import LOG4J2, session_conf

pytestmark = pytest.mark.spark

BIN = Path(sys.executable).parent
GPU_KEYS = ("spark.executor.resource.gpu.amount", "spark.task.resource.gpu.amount")


def _script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "discover.sh"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@pytest.fixture
def fake_gpu(tmp_path, monkeypatch):
    script = _script(tmp_path, """echo '{"name":"gpu","addresses":["0"]}'""")
    monkeypatch.setenv("UDFS_GPU_DISCOVERY_SCRIPT", str(script))
    return script


@pytest.fixture
def no_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("UDFS_GPU_DISCOVERY_SCRIPT", str(_script(tmp_path, "exit 1")))


def test_discover_parses_the_script(tmp_path, fake_gpu):
    assert discover(fake_gpu) == ["0"]
    assert discover(_script(tmp_path, "echo not-json")) == []
    assert discover(_script(tmp_path, "exit 3")) == []
    assert discover(tmp_path / "missing.sh") == []


def test_a_script_that_lost_its_executable_bit_runs_through_bash(tmp_path, fake_gpu):
    fake_gpu.chmod(0o644)  # as an installer that drops file modes would leave it
    assert discover(fake_gpu) == ["0"]
    # Spark runs the script itself, without a shell: say so before Spark fails obscurely.
    with pytest.raises(ConfigError, match=r"cannot run the GPU discovery script: chmod \+x"):
        gpu_conf("local[2]", fake_gpu)


def test_the_packaged_discovery_script_is_found_and_printed():
    """One copy, inside the package (the wheel ships it); `udfs spark discovery-script` shows it."""
    package = Path(udfs.__file__).parent
    assert package / "spark" / "getGpusResources.sh" == DISCOVERY_SCRIPT
    assert os.access(DISCOVERY_SCRIPT, os.X_OK)
    assert package / "spark" / "log4j2.properties" == LOG4J2 and LOG4J2.is_file()
    result = CliRunner().invoke(cli, ["spark", "discovery-script"])
    assert result.exit_code == 0, result.output
    assert result.output == f"{DISCOVERY_SCRIPT}\n"


def test_on_with_a_fake_gpu_sets_task_gpu_resources(tmp_path, fake_gpu):
    conf = session_conf("local-cluster[1,2,1024]", "on", state_dir=tmp_path)
    assert conf["spark.executor.resource.gpu.amount"] == "1"
    assert conf["spark.task.resource.gpu.amount"] == "0.5"  # two cores share the GPU
    assert conf["spark.executor.resource.gpu.discoveryScript"] == str(fake_gpu)
    assert conf["spark.worker.resource.gpu.amount"] == "1"  # local-cluster's worker offers it
    assert "spark.plugins" not in conf  # no RAPIDS jar given


def test_rapids_jar_adds_the_plugin_keys(tmp_path, fake_gpu):
    jar = tmp_path / "rapids-4-spark_2.13.jar"
    jar.write_bytes(b"PK")
    conf = session_conf("local[2]", "auto", state_dir=tmp_path, rapids_jar=str(jar))
    assert conf["spark.plugins"] == "com.nvidia.spark.SQLPlugin"
    assert conf["spark.jars"] == str(jar)
    assert conf["spark.executorEnv.PYTHONPATH"] == str(jar)
    assert conf["spark.rapids.python.concurrentPythonWorkers"] == "2"
    assert conf["spark.rapids.python.memory.gpu.pooling.enabled"] == "false"  # no cudf
    for key, value in RAPIDS_CONF.items():
        assert conf[key] == value
    assert "spark.worker.resource.gpu.amount" not in conf  # only for local-cluster


def test_missing_rapids_jar_is_a_clear_error(tmp_path, fake_gpu):
    with pytest.raises(ConfigError, match=r"RAPIDS Accelerator jar not found: /nope\.jar"):
        gpu_conf("local[2]", fake_gpu, rapids_jar="/nope.jar")


def test_off_and_auto_without_gpu_carry_no_gpu_keys(tmp_path, no_gpu, caplog):
    off = session_conf("local[2]", "off", state_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="udfs.spark"):
        auto = session_conf("local[2]", "auto", state_dir=tmp_path)
    for conf in (off, auto):
        assert not any(k.startswith(("spark.rapids", "spark.plugins")) for k in conf)
        assert not any(k in conf for k in GPU_KEYS)
    assert [r.message for r in caplog.records] == ["udfs: no GPU found, scoring on the CPU"]


def test_on_without_gpu_is_a_clear_error(tmp_path, no_gpu):
    with pytest.raises(ConfigError, match="gpu='on' but no GPU was found"):
        session_conf("local[2]", "on", state_dir=tmp_path)
    with pytest.raises(ConfigError, match="gpu must be one of auto, on, off, got 'yes'"):
        session_conf("local[2]", "yes", state_dir=tmp_path)


def test_executor_cores_from_master():
    assert executor_cores("local-cluster[1,2,1024]") == 2
    assert executor_cores("local[4]") == 1


def test_device_from_cuda_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert device.task_gpu() is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert device.task_gpu() == "0"  # CUDA renumbers the visible devices from 0
    assert device.torch_device("0") == "cuda:0" and device.torch_device(None) == "cpu"


@pytest.mark.slow
def test_local_cluster_task_sees_its_gpu_and_falls_back_to_cpu(
    tmp_path, fake_gpu, model_store, trained
):
    """Real Spark GPU scheduling, simulated: the task gets GPU 0 and scores exactly on the CPU."""
    rows = customers(600, seed=5, null_fraction=0.05)[["id", *FEATURES]]
    rows.to_parquet(tmp_path / "rows.parquet")
    query = tmp_path / "score.sql"
    args = ", ".join(FEATURES)
    query.write_text(
        f"INSERT OVERWRITE DIRECTORY '{tmp_path / 'out'}' USING parquet "
        f"SELECT id, churn({args}) AS churn, segment({args}) AS segment "
        f"FROM parquet.`{tmp_path / 'rows.parquet'}`"
    )
    loads = tmp_path / "loads.log"
    env = {**os.environ, "UDFS_HOME": str(tmp_path / "home"), "UDFS_STORE": str(model_store)}
    proc = subprocess.run(
        [
            str(BIN / "udfs"), "spark", "sql", str(query), "--gpu", "on",
            "--master", "local-cluster[1,2,1024]",
            "--conf", f"spark.executorEnv.UDFS_SPARK_LOAD_LOG={loads}",
        ],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    loaded = {tuple(line.split()[2:]) for line in loads.read_text().splitlines()}
    assert loaded == {("gpu=0", "cpu-fallback")}
    out = pd.read_parquet(tmp_path / "out").sort_values("id")
    assert out["segment"].tolist() == expected(trained["segment"], rows)
    assert out["churn"].astype(object).where(out["churn"].notna(), None).tolist() == expected(
        trained["churn"], rows
    )


def test_device_maps_task_address_through_cuda_visible_devices(monkeypatch):
    class Gpu:
        addresses = ("3",)

    class Context:
        def resources(self):
            return {"gpu": Gpu()}

    monkeypatch.setattr(device.TaskContext, "get", staticmethod(lambda: Context()))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert device.task_gpu() == "3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # as the RAPIDS Python daemon sets it
    assert device.task_gpu() == "0"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert device.task_gpu() == "1"


def _properties(name: str) -> dict[str, str]:
    path = Path(__file__).resolve().parents[2] / "spark_jobs" / "conf" / name
    pairs = (line.split(None, 1) for line in path.read_text().splitlines())
    return {p[0]: p[1].strip() for p in pairs if len(p) == 2 and not p[0].startswith("#")}


def test_rapids_properties_file_agrees_with_the_session_conf():
    props = _properties("rapids.properties")
    for key, value in RAPIDS_CONF.items():
        assert props[key] == value, key
    cores = int(props["spark.executor.cores"])
    assert float(props["spark.task.resource.gpu.amount"]) == 1 / cores
    assert int(props["spark.rapids.python.concurrentPythonWorkers"]) >= cores
    # The script installed with the package: spark_jobs/ has no copy of its own.
    assert props["spark.executor.resource.gpu.discoveryScript"].endswith(
        "/site-packages/udfs/spark/getGpusResources.sh"
    )
    assert "spark.plugins" not in _properties("cpu.properties")


def test_executor_cache_runs_the_plans_trees_on_the_gpu_backend(
    tmp_path, monkeypatch, caplog, model_store
):
    """What a GPU task loads, without Spark: the plan only (no pickle), on the GPU backend."""
    pytest.importorskip("torch", reason="the udfs[gpu] extra (PyTorch) is not installed")
    from udfs.accel import trees
    from udfs.plan.execute import PlanRunner
    from udfs.spark import cache
    from udfs.store import resolve

    shipped = {}
    for name in ("segment", "churn"):  # a random forest, a logistic regression
        ref = resolve(name, store=model_store)
        shipped[name] = (ref.signature(), {"plan": ref.plan().to_bytes(), "artifact": None})
    ref = resolve("plain", store=model_store)
    pickled = (ref.signature(), {"plan": None, "artifact": ref.artifact_path.read_bytes()})
    loads = tmp_path / "loads.log"
    monkeypatch.setenv(cache.LOAD_LOG_ENV, str(loads))
    monkeypatch.setattr(cache, "_models", type(cache._models)())
    with caplog.at_level(logging.WARNING, logger="udfs.spark"):
        no_cuda = cache.get(shipped["segment"][0], lambda: shipped["segment"][1], gpu="0")
        linear = cache.get(shipped["churn"][0], lambda: shipped["churn"][1], gpu="0")
        sklearn_cpu = cache.get(pickled[0], lambda: pickled[1], gpu="0")
        # torch's CPU device stands in for the task's GPU here.
        monkeypatch.setattr(device, "torch_device", lambda address: "cpu")
        fast = cache.get(shipped["segment"][0], lambda: shipped["segment"][1], gpu="1")
    assert isinstance(no_cuda.scorer, PlanRunner) and isinstance(linear.scorer, PlanRunner)
    assert not isinstance(sklearn_cpu.scorer, PlanRunner)  # its pickle, in scikit-learn
    assert isinstance(fast.scorer, trees.PlanTrees) and fast.scorer.device.type == "cpu"
    assert [line.split()[2:] for line in loads.read_text().splitlines()] == [
        ["gpu=0", "cpu-fallback"],
        ["gpu=0", "cpu-fallback"],
        ["gpu=0", "cpu-fallback"],
        ["gpu=1", "gpu"],
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert all(m.startswith("udfs: model '") for m in messages)
    assert "although GPU 0 is assigned (ConfigError: device 'cuda:0'" in messages[0]
    assert "(LogisticRegression is not a tree ensemble)" in messages[1]
    assert "(it has no scoring plan, which the GPU backend runs)" in messages[2]
    rows = customers(50, seed=3, null_fraction=0.1)
    columns = [rows[f] for f in FEATURES]
    signature = shipped["segment"][0]
    for method in ("predict", "predict_proba"):
        want = getattr(scoring, method)(no_cuda.scorer, signature, columns)
        pd.testing.assert_series_equal(
            getattr(scoring, method)(fast.scorer, signature, columns), want
        )
