"""The README's examples run, so they never rot."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.spark
def test_readme_python_examples_run(tmp_path, spark, monkeypatch):
    monkeypatch.setenv("UDFS_HOME", str(tmp_path / "home"))
    examples = blocks("python")
    assert examples, "the README has Python examples"
    namespace = {"STORE": tmp_path / "models"}
    for code in examples:
        exec(compile(code, str(README), "exec"), namespace)
    assert namespace["ref"].version == 1
    assert len(namespace["scores"]) == 10
