"""Run every benchmark, one after the other, and gather their tables in benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/run_all.py            (or: make bench)

Each benchmark measures its own baselines in the same run and writes results/<name>.md.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["inprocess_scoring.py", "postgres_scoring.py", "spark_scoring.py", "spark_connect.py"]


def main() -> int:
    if {"-h", "--help"} & set(sys.argv):
        print(__doc__.strip() + "\n\n--collect: only gather results/*.md into RESULTS.md")
        return 0
    failed = []
    # --collect: only gather the latest results/*.md into RESULTS.md, without running anything.
    for script in [] if "--collect" in sys.argv else BENCHMARKS:
        print(f"== {script}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / script)], check=False)
        print(f"== {script}: exit {proc.returncode} after {time.perf_counter() - start:.0f}s\n")
        if proc.returncode != 0:
            failed.append(script)
    sections = [
        (HERE / "results" / script.replace(".py", ".md")).read_text()
        for script in BENCHMARKS
        if (HERE / "results" / script.replace(".py", ".md")).is_file()
    ]
    (HERE / "RESULTS.md").write_text(
        "# Benchmark results\n\nWritten by `benchmarks/run_all.py`; medians, ratios against "
        "baselines measured in the same run.\n\n" + "\n\n".join(s.strip() for s in sections) + "\n"
    )
    print(f"wrote {HERE / 'RESULTS.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
