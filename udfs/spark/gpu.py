"""GPU detection and the session configuration that follows from ``gpu="auto"|"on"|"off"``."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from udfs.errors import ConfigError

log = logging.getLogger("udfs.spark")
GPU_MODES = ("auto", "on", "off")
DISCOVERY_SCRIPT = Path(__file__).with_name("getGpusResources.sh")


def detect_gpus() -> list[str]:
    """GPU addresses visible here: ``nvidia-smi -L``, else ``CUDA_VISIBLE_DEVICES``."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "-L"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            out = None
        if out is not None and out.returncode == 0:
            lines = [line for line in out.stdout.splitlines() if line.startswith("GPU ")]
            return [line.split(":", 1)[0].removeprefix("GPU ").strip() for line in lines]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible and visible not in ("-1", "NoDevFiles"):
        return [d.strip() for d in visible.split(",") if d.strip()]
    return []


def use_gpu(mode: str) -> bool:
    """Decide whether the session uses GPUs; ``on`` without a GPU is an error."""
    if mode not in GPU_MODES:
        raise ConfigError(f"gpu must be one of {', '.join(GPU_MODES)}, got {mode!r}", value=mode)
    if mode == "off":
        return False
    if detect_gpus():
        return True
    if mode == "on":
        raise ConfigError(
            "gpu='on' but no GPU is visible here (nvidia-smi -L lists none and "
            "CUDA_VISIBLE_DEVICES is empty); use gpu='auto' to fall back to the CPU",
            value=mode,
        )
    log.info("udfs: no GPU found, scoring on the CPU")
    return False


def gpu_scheduling_conf() -> dict[str, str]:
    """Task GPU scheduling: one GPU per executor, found by the discovery script."""
    return {
        "spark.executor.resource.gpu.amount": "1",
        "spark.executor.resource.gpu.discoveryScript": str(DISCOVERY_SCRIPT),
        "spark.worker.resource.gpu.amount": "1",
        "spark.worker.resource.gpu.discoveryScript": str(DISCOVERY_SCRIPT),
        "spark.task.resource.gpu.amount": "1",
    }
