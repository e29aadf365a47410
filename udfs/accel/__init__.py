"""Optional accelerated inference backends (the ``udfs[gpu]`` extra).

A backend reads a model's verified scoring plan (never a pickle) and runs part of it on a device,
with the same results as the plan on the CPU. Importing this package never imports the accelerator
libraries themselves; a backend imports them only when it converts a plan.

- :mod:`udfs.accel.trees`: a plan's tree ensemble as PyTorch tensors (tree traversal).
"""
