"""The Spark adapter: models as vectorized Spark SQL functions.

>>> from udfs import spark as udfs_spark
>>> spark = udfs_spark.session()  # doctest: +SKIP
>>> udfs_spark.register(spark, "churn")  # doctest: +SKIP
['churn', 'churn_proba']
"""

from udfs.spark.register import register, register_all
from udfs.spark.session import session

__all__ = ["register", "register_all", "session"]
