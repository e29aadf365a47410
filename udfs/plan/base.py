"""What every part of the plan layer shares: the format version and the "cannot compile" error."""

from __future__ import annotations

from udfs.errors import UdfsError

# Bumped whenever a plan written by this code could not be read by older code.
PLAN_FORMAT_VERSION = 1


class PlanUnsupported(UdfsError):
    """A step of the model has no plan; the model keeps running through scikit-learn.

    ``step`` names the step (e.g. ``"model: SVC"``) so ``udfs models show`` can say why.
    """


class PlanMismatch(PlanUnsupported):
    """A compiled plan does not reproduce scikit-learn bit for bit; it must not be used.

    ``output`` (``predict`` or ``predict_proba``), ``row`` and both values travel in ``details``.
    """
