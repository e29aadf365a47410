"""One BLAS/OpenMP thread per scoring process: the one place udfs says how.

PostgreSQL backends and Spark's Python workers each score one batch at a time, and there are
many of them: BLAS threads of their own would only fight over the cores. The environment
variables work only if set before numpy is first imported, so this module imports nothing
heavy; ``limit_this_process`` also caps pools that are already running.
"""

from __future__ import annotations

import os

# The variables OpenBLAS, OpenMP and MKL read when they start.
ONE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def set_environment() -> None:
    """Set the variables in this process (before numpy is imported, for them to count)."""
    os.environ.update(ONE_THREAD_ENV)


def limit_this_process() -> None:
    """One thread for every BLAS/OpenMP pool, even one numpy started before us."""
    set_environment()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the environment variables then do the job
        return
    threadpool_limits(1)
