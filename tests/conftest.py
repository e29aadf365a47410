"""Shared fixtures: models for every engine, one SparkSession, one Postgres cluster."""

pytest_plugins = [
    "tests.fixtures.models",
    "tests.fixtures.postgres",
    "tests.fixtures.spark",
    "tests.fixtures.connect",
    "tests.fixtures.boosting",
]
