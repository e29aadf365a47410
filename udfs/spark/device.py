"""Which device a Spark task scores on: its GPU from Spark's scheduler, else CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import os

from pyspark import TaskContext


def task_gpu() -> str | None:
    """The CUDA device index of the GPU Spark assigned to this task, or None.

    With GPU scheduling on, ``TaskContext.resources()["gpu"]`` names the task's GPU by its
    physical address; Spark does not set ``CUDA_VISIBLE_DEVICES`` itself, but the RAPIDS Python
    daemon does, and CUDA then numbers the visible devices from 0. So an address listed in
    ``CUDA_VISIBLE_DEVICES`` becomes its position there.
    """
    visible = [
        d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()
    ]
    if visible in (["-1"], ["NoDevFiles"]):
        visible = []
    context = TaskContext.get()
    if context is not None:
        gpu = context.resources().get("gpu")
        if gpu is not None and gpu.addresses:
            address = str(gpu.addresses[0])
            return str(visible.index(address)) if address in visible else address
    return "0" if visible else None


def torch_device(address: str | None) -> str:
    """``"cuda:<address>"`` for a GPU address, ``"cpu"`` without one."""
    return "cpu" if address is None else f"cuda:{address}"
