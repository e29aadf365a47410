"""The README's examples run, so they never rot."""

import pytest

from tests.fixtures.readme import README, blocks


@pytest.mark.spark
def test_readme_python_examples_run(tmp_path, spark, connect_url, monkeypatch):
    monkeypatch.setenv("UDFS_HOME", str(tmp_path / "home"))
    examples = blocks("python")
    assert examples, "the README has Python examples"
    namespace = {"STORE": tmp_path / "models", "CONNECT_URL": connect_url}
    try:
        for code in examples:
            exec(compile(code, str(README), "exec"), namespace)
    finally:
        if "remote" in namespace:  # the Connect example's session: not left to retry at exit
            namespace["remote"].stop()
    assert namespace["ref"].version == 1
    assert len(namespace["scores"]) == 10
