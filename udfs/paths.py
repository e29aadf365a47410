"""Where udfs keeps local state (``$UDFS_HOME``, else ``.udfs`` in the working directory), and
where the files it ships inside its package are."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from udfs.errors import ConfigError

HOME_ENV = "UDFS_HOME"


def home() -> Path:
    """The absolute udfs home directory (the embedded Postgres cluster, Spark's warehouse)."""
    return Path(os.environ.get(HOME_ENV, ".udfs")).absolute()


def package_file(*parts: str) -> Path:
    """A data file shipped inside the installed ``udfs`` package, as a path on disk.

    Found through importlib.resources, so it works from a checkout, an editable install and a
    wheel alike. Spark and the JVM need a real file: udfs is always installed as files (its
    compiled plan kernels cannot load from a zip), so the resource is one.

    >>> package_file("spark", "log4j2.properties").name
    'log4j2.properties'
    """
    ref = resources.files("udfs").joinpath(*parts)
    if not isinstance(ref, Path):  # a zip import: never the case for a working install
        raise ConfigError(f"udfs must be installed as files, not zipped, to use {ref}")
    return ref
