"""GPU detection and the Spark configuration that follows from ``gpu="auto"|"on"|"off"``.

Every decision here is a pure function of its inputs (a discovery script's output, a jar path,
the master URL), so it is tested on machines without GPUs.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

from udfs.errors import ConfigError
from udfs.paths import package_file

log = logging.getLogger("udfs.spark")
GPU_MODES = ("auto", "on", "off")
# Installed with the package; `udfs spark discovery-script` prints its path for cluster configs.
DISCOVERY_SCRIPT = package_file("spark", "getGpusResources.sh")
DISCOVERY_ENV = "UDFS_GPU_DISCOVERY_SCRIPT"
RAPIDS_JAR_ENV = "SPARK_RAPIDS_JAR"

# RAPIDS Accelerator settings for SQL plus GPU pandas UDFs, checked against the spark-rapids
# configs.md, advanced_configs.md and rapids-udfs.md. The JVM (cuDF, its RMM pool) and the
# Python workers (torch) share each GPU, so the JVM pool must leave room.
RAPIDS_CONF: dict[str, str] = {
    "spark.plugins": "com.nvidia.spark.SQLPlugin",
    "spark.rapids.sql.enabled": "true",
    # Pinned host memory speeds host<->device copies; 2g is NVIDIA's usual starting point.
    "spark.rapids.memory.pinnedPool.size": "2g",
    # torch allocates outside RMM: cap the JVM pool at half the GPU.
    "spark.rapids.memory.gpu.allocFraction": "0.5",
    "spark.rapids.memory.gpu.maxAllocFraction": "0.5",
    "spark.rapids.memory.gpu.minAllocFraction": "0",
    "spark.rapids.sql.concurrentGpuTasks": "2",
    "spark.rapids.sql.explain": "NOT_ON_GPU",
    # pandas UDFs run in GPU-aware Python workers (the plugin sets spark.python.daemon.module).
    "spark.rapids.sql.python.gpu.enabled": "true",
    # Python-side RMM pooling needs cudf, which udfs does not use; torch has its own allocator.
    "spark.rapids.python.memory.gpu.pooling.enabled": "false",
    "spark.rapids.python.memory.gpu.allocFraction": "0.1",
    "spark.rapids.python.memory.gpu.maxAllocFraction": "0.2",
}


def discover(script: Path | None = None) -> list[str]:
    """GPU addresses from a Spark discovery script (``{"name":"gpu","addresses":[...]}``).

    A missing script, a failing one (no ``nvidia-smi``) or bad output means no GPU. A script
    without its executable bit (an installer that dropped the mode) runs through ``bash``.
    """
    script = script or Path(os.environ.get(DISCOVERY_ENV, DISCOVERY_SCRIPT))
    command = [str(script)] if os.access(script, os.X_OK) else ["bash", str(script)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    try:
        found = json.loads(out.stdout)
    except json.JSONDecodeError:
        return []
    if not isinstance(found, dict) or found.get("name") != "gpu":
        return []
    return [str(address) for address in found.get("addresses", [])]


def use_gpu(mode: str, gpus: list[str]) -> bool:
    """Decide whether the session uses GPUs; ``on`` without a GPU is an error."""
    if mode not in GPU_MODES:
        raise ConfigError(f"gpu must be one of {', '.join(GPU_MODES)}, got {mode!r}", value=mode)
    if mode == "off":
        return False
    if gpus:
        return True
    if mode == "on":
        raise ConfigError(
            "gpu='on' but no GPU was found: the discovery script "
            f"({os.environ.get(DISCOVERY_ENV, DISCOVERY_SCRIPT)}) lists none. "
            "Use gpu='auto' to fall back to the CPU.",
            value=mode,
        )
    log.warning("udfs: no GPU found, scoring on the CPU")
    return False


def gpu_conf(
    master: str,
    script: Path,
    *,
    rapids_jar: str | None = None,
    executor_cores: int = 1,
) -> dict[str, str]:
    """Task GPU scheduling (one GPU per executor, shared by its cores), plus RAPIDS with a jar."""
    if not os.access(script, os.X_OK):
        # Spark executes the script itself (no shell), so it must keep its executable bit.
        raise ConfigError(f"Spark cannot run the GPU discovery script: chmod +x {script}")
    conf = {
        "spark.executor.resource.gpu.amount": "1",
        "spark.executor.resource.gpu.discoveryScript": str(script),
        # Tasks share their executor's GPU: each gets 1/cores of it, so all cores stay busy.
        "spark.task.resource.gpu.amount": f"{1 / max(executor_cores, 1):g}",
    }
    if master.startswith("local-cluster"):
        # The embedded standalone worker must offer the GPU too, or no executor ever starts.
        conf["spark.worker.resource.gpu.amount"] = "1"
        conf["spark.worker.resource.gpu.discoveryScript"] = str(script)
    jar = rapids_jar or os.environ.get(RAPIDS_JAR_ENV)
    if jar:
        if not Path(jar).is_file():
            raise ConfigError(f"RAPIDS Accelerator jar not found: {jar}", value=jar)
        conf.update(RAPIDS_CONF)
        conf.update(
            {
                "spark.jars": jar,
                "spark.driver.extraClassPath": jar,
                "spark.executor.extraClassPath": jar,
                # The rapids Python daemon and worker modules ship inside the jar.
                "spark.executorEnv.PYTHONPATH": jar,
                # Too few workers deadlock: one per task slot, for up to two pandas-UDF stages.
                "spark.rapids.python.concurrentPythonWorkers": str(2 * max(executor_cores, 1)),
            }
        )
    return conf


def executor_cores(master: str) -> int:
    """Cores per executor implied by a local master URL (``local-cluster[N,C,M]`` -> C)."""
    if master.startswith("local-cluster[") and master.endswith("]"):
        parts = master[len("local-cluster[") : -1].split(",")
        if len(parts) == 3 and parts[1].strip().isdigit():
            return int(parts[1])
    return 1
