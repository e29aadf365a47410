"""The Spark adapter: models as vectorized Spark SQL functions.

>>> from udfs import spark as udfs_spark
>>> spark = udfs_spark.session()  # doctest: +SKIP
>>> udfs_spark.register(spark, "churn")  # doctest: +SKIP
['churn', 'churn_proba']
>>> udfs_spark.evaluate(spark, "churn", "labelled", "churned")  # doctest: +SKIP
>>> udfs_spark.drift(spark, "churn", "new_customers")  # doctest: +SKIP
"""

from udfs.spark.drift import drift
from udfs.spark.evaluate import evaluate, register_evaluate
from udfs.spark.register import register, register_all
from udfs.spark.session import session

__all__ = ["drift", "evaluate", "register", "register_all", "register_evaluate", "session"]
