"""The wheel is complete: installed into a fresh virtualenv, it serves PostgreSQL and Spark.

The wheel is built from the checkout's sources, then installed with ``pip install --no-deps``
into a new virtualenv in /tmp. That venv reuses the running environment's dependencies: each
entry of this environment's site-packages is symlinked into the new one, except udfs itself and
every ``.pth`` file (the checkout's editable install is a ``.pth`` finder). Symlinks rather than
one ``.pth`` line pointing here: ``udfs pg install`` records only the new venv's site-packages
for PL/Python, which puts them on ``sys.path`` without reading ``.pth`` files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psycopg2
import pyspark
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NAME = "pkg_churn"
ARGS = "age, tenure, plan, active"
# Run-time files the package reads through importlib.resources, and their zip modes.
RESOURCES = {
    "udfs/postgres/sql/install.sql": 0o644,
    "udfs/spark/log4j2.properties": 0o644,
    "udfs/spark/getGpusResources.sh": 0o755,
}
# Settings of the caller's shell that would point the commands at another server or interpreter.
FOREIGN_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "SPARK_HOME")
FOREIGN_PREFIXES = ("UDFS_", "PG", "PYSPARK_")

# Run by the new venv's python in the work directory: fit, save, and what scikit-learn predicts.
SAVE_MODEL = """
import json, sys
import udfs
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from udfs.demo.data import FEATURES, customers

store, name = sys.argv[1:]
train = customers(400, seed=1)
features = ColumnTransformer(
    [
        ("num", SimpleImputer(), ["age", "tenure"]),
        ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ("active", "passthrough", ["active"]),
    ]
)
booster = GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0)
model = Pipeline([("features", features), ("model", booster)])
model.fit(train[FEATURES], train["churned"])
print(udfs.save_model(model, name, sample=train[FEATURES], store=store))
rows = customers(60, seed=2)[["id", *FEATURES]]
rows.to_parquet("rows.parquet")
rows[["id"]].assign(
    label=model.predict(rows[FEATURES]),
    probability=model.predict_proba(rows[FEATURES])[:, 1],
).to_parquet("expected.parquet")
"""

# Where the new venv's python finds udfs, its compiled kernels, its resources and sklearn.
WHERE = """
import json
from importlib import resources
import sklearn, udfs, udfs.plan._kernels
from udfs.spark.gpu import DISCOVERY_SCRIPT
from udfs.spark.session import LOG4J2
print(json.dumps({
    "udfs": udfs.__file__,
    "kernels": udfs.plan._kernels.__file__,
    "sklearn": sklearn.__file__,
    "install_sql": str(resources.files("udfs.postgres").joinpath("sql", "install.sql")),
    "discovery_script": str(DISCOVERY_SCRIPT),
    "log4j2": str(LOG4J2),
}))
"""


@dataclass
class Installed:
    """The wheel installed in a fresh venv, a work directory and a store with one model."""

    wheel: Path
    venv: Path
    work: Path
    store: Path
    env: dict[str, str]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def run(self, *args: str | Path, timeout: float = 120, **env: str) -> str:
        """Run a command in the work directory; its stdout, or a failure showing both streams."""
        proc = subprocess.run(
            [str(a) for a in args],
            cwd=self.work,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, f"{args}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def udfs(self, *args: str | Path, timeout: float = 120) -> str:
        return self.run(self.venv / "bin" / "udfs", *args, timeout=timeout)

    def expected(self) -> pd.DataFrame:
        return pd.read_parquet(self.work / "expected.parquet").sort_values("id")


def _build_wheel(tmp: Path) -> Path:
    """``pip wheel`` of the checkout's sources, copied first so the checkout gets no build/."""
    src = tmp / "src"
    src.mkdir()
    for path in ROOT.iterdir():  # pyproject.toml, README.md and any other top-level file
        if path.is_file():
            shutil.copy2(path, src)
    shutil.copytree(
        ROOT / "udfs", src / "udfs", ignore=shutil.ignore_patterns("__pycache__", "*.so")
    )
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    command += ["--no-index", "-q", "-w", str(tmp / "dist"), str(src)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (tmp / "dist").glob("udfs-*.whl")
    return wheel


def _reuse_site_packages(venv: Path) -> None:
    """Symlink this environment's packages into ``venv``, all but udfs and ``.pth`` files."""
    target = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    ours = {Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["platlib"])}
    for site in ours:
        for entry in site.iterdir():
            name = entry.name
            if (
                name in ("udfs", "__pycache__")
                or name.startswith(("udfs-", "udfs.", "__editable__"))
                or name.endswith(".pth")
                or (target / name).exists()
            ):
                continue
            (target / name).symlink_to(entry)


def _make_readable(top: Path) -> None:
    """The server runs as the postgres OS user: let it read everything under ``top``."""
    for path in [top, *top.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        path.chmod(mode | (0o755 if path.is_dir() else 0o644))


def _clean_env(venv: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in FOREIGN_ENV and not key.startswith(FOREIGN_PREFIXES)
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    """Build, install into a new venv, check where everything comes from, save one model."""
    # /tmp, not $TMPDIR (which may be private): the postgres OS user reads the venv.
    tmp = Path(tempfile.mkdtemp(prefix="udfs-wheel-", dir="/tmp"))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it 0700
        wheel = _build_wheel(tmp)
        venv = tmp / "venv"
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
        )
        _reuse_site_packages(venv)  # pip comes along, so the venv can install the wheel
        work = tmp / "work"
        work.mkdir()
        box = Installed(wheel, venv, work, work / "models", _clean_env(venv))
        box.run(box.python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel)
        _make_readable(tmp)
        box.run(box.python, "-c", SAVE_MODEL, box.store, NAME, timeout=300)
        yield box
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_the_wheel_ships_its_run_time_files_and_the_venv_uses_them(installed):
    with zipfile.ZipFile(installed.wheel) as wheel:
        modes = {info.filename: info.external_attr >> 16 & 0o777 for info in wheel.infolist()}
    for name, mode in RESOURCES.items():
        assert modes.get(name) == mode, name
    assert any(n.startswith("udfs/plan/_kernels.") and n.endswith(".so") for n in modes)

    where = json.loads(installed.run(installed.python, "-c", WHERE))
    venv = installed.venv.resolve()
    for key in ("udfs", "kernels", "install_sql", "discovery_script", "log4j2"):
        # Resolved: no symlink leads back to the checkout's editable install.
        assert Path(where[key]).resolve().is_relative_to(venv), (key, where[key])
        assert Path(where[key]).is_file(), where[key]
    # The dependencies are this environment's own, reused.
    assert Path(where["sklearn"]).resolve().is_relative_to(Path(sys.prefix).resolve())
    script = Path(where["discovery_script"])
    assert os.access(script, os.X_OK)  # Spark runs it without a shell
    assert installed.udfs("spark", "discovery-script") == f"{script}\n"
    shown = installed.udfs("models", "show", NAME, "--store", installed.store)
    assert "scoring path: plan" in shown  # the plan runs on the wheel's compiled kernels


def test_postgres_scores_with_the_installed_wheel(installed):
    """udfs pg up, install, deploy, then SQL scores exactly as scikit-learn; always pg down."""
    try:
        dsn = installed.udfs("pg", "up").strip().splitlines()[-1]
        out = installed.udfs("pg", "install")
        # PL/Python imports udfs from the new venv (the path install recorded), not the checkout.
        udfs_path = out.split("udfs from ", 1)[1].split(";", 1)[0]
        assert Path(udfs_path).resolve().is_relative_to(installed.venv.resolve()), out
        deployed = installed.udfs("pg", "deploy", NAME, "--store", installed.store)
        assert deployed.strip() == f"deployed {NAME}@1"
        rows = pd.read_parquet(installed.work / "rows.parquet")
        conn = psycopg2.connect(dsn)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    f"SELECT id, ml.{NAME}({ARGS}), ml.{NAME}_proba({ARGS}) "
                    "FROM unnest(%s::bigint[], %s::float8[], %s::bigint[], %s::text[], "
                    "%s::boolean[]) AS r(id, age, tenure, plan, active) ORDER BY id",
                    [rows[c].tolist() for c in ("id", "age", "tenure", "plan", "active")],
                )
                scored = cur.fetchall()
        finally:
            conn.close()
    finally:
        down = subprocess.run(
            [installed.venv / "bin" / "udfs", "pg", "down"],
            cwd=installed.work, env=installed.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert down.returncode == 0, down.stdout + down.stderr
    want = installed.expected()
    assert [r[0] for r in scored] == want["id"].tolist()
    assert [r[1] for r in scored] == want["label"].tolist()
    assert [r[2] for r in scored] == want["probability"].tolist()  # bit for bit


@pytest.mark.spark
def test_spark_submit_scores_with_the_installed_wheel(installed):
    """spark_jobs/score_sql.py under spark-submit; driver and workers run the new venv."""
    out = installed.work / "spark-out"
    query = installed.work / "score.sql"
    query.write_text(
        f"INSERT OVERWRITE DIRECTORY '{out}' USING parquet "
        f"SELECT id, {NAME}({ARGS}) AS label, {NAME}_proba({ARGS}) AS probability "
        f"FROM parquet.`{installed.work / 'rows.parquet'}`"
    )
    python = str(installed.python)
    stdout = installed.run(
        BIN / "spark-submit",
        "--master", "local[1]",
        "--properties-file", ROOT / "spark_jobs/conf/cpu.properties",
        # No Hive metastore to create (tests/spark/test_job.py covers it): ~5 s less.
        "--conf", "spark.sql.catalogImplementation=in-memory",
        ROOT / "spark_jobs/score_sql.py", query, "--store", installed.store, "--model", NAME,
        timeout=300,
        UDFS_HOME=str(installed.work / "home"),
        PYSPARK_PYTHON=python,
        PYSPARK_DRIVER_PYTHON=python,
        SPARK_HOME=str(Path(pyspark.__file__).parent),
    )  # fmt: skip
    assert f"registered: {NAME}, {NAME}_proba" in stdout
    got = pd.read_parquet(out).sort_values("id")
    want = installed.expected()
    assert got["id"].tolist() == want["id"].tolist()
    assert got["label"].tolist() == want["label"].tolist()
    assert got["probability"].tolist() == want["probability"].tolist()
