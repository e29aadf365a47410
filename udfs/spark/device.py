"""Which device a Spark task scores on: its GPU from Spark's scheduler, else CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import os

from pyspark import TaskContext


def task_gpu() -> str | None:
    """The address of the GPU Spark assigned to this task, or None.

    With GPU scheduling on, ``TaskContext.resources()["gpu"]`` names the task's GPU(s); Spark
    does not set ``CUDA_VISIBLE_DEVICES`` itself. Outside Spark's GPU scheduling, the first
    entry of ``CUDA_VISIBLE_DEVICES`` (which renumbers the visible devices from 0) is used.
    """
    context = TaskContext.get()
    if context is not None:
        gpu = context.resources().get("gpu")
        if gpu is not None and gpu.addresses:
            return str(gpu.addresses[0])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible and visible not in ("-1", "NoDevFiles"):
        return "0"
    return None


def torch_device(address: str | None) -> str:
    """``"cuda:<address>"`` for a GPU address, ``"cpu"`` without one."""
    return "cpu" if address is None else f"cuda:{address}"
