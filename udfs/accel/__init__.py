"""Optional accelerated inference backends (the ``udfs[gpu]`` extra).

Each backend converts a fitted scikit-learn model into an equivalent that runs on a GPU and is
verified against scikit-learn on the CPU. Importing this package never imports the accelerator
libraries themselves; a backend imports them only when it converts a model.

- :mod:`udfs.accel.trees`: tree ensembles as PyTorch tensors (tree traversal).
"""
