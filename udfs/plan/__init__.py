"""Scoring plans: a fitted scikit-learn model compiled into pickle-free data (DESIGN.md 2b).

``compile`` modules read a fitted model (they import scikit-learn, at save/deploy time only);
``execute`` modules run a plan with numpy and the compiled kernels in ``udfs.plan._kernels``
and never import scikit-learn, scipy or pandas.
"""
