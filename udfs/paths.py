"""Where udfs keeps local state: ``$UDFS_HOME``, else ``.udfs`` in the working directory."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "UDFS_HOME"


def home() -> Path:
    """The absolute udfs home directory (the embedded Postgres cluster, Spark's warehouse)."""
    return Path(os.environ.get(HOME_ENV, ".udfs")).absolute()
