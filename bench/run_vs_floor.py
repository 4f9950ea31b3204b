"""Issue #2 benchmark: a whole `opslib run health` (demo target, HTML export and manifest
included) against the floor — papermill executing a one-cell notebook that imports pandas
and matplotlib — run interleaved in the same session. Prints medians and the ratio.

    .venv/bin/python bench/run_vs_floor.py [--rounds 5]

Target: ratio <= 1.5.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

REPO = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], **kw) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO, **kw)
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-run-"))
    floor_nb = tmp / "floor.ipynb"
    nb = new_notebook(cells=[new_code_cell("import pandas\nimport matplotlib.pyplot")],
                      metadata={"kernelspec": {"name": "opslib", "display_name": "Python (opslib)",
                                               "language": "python"}})
    nbformat.write(nb, floor_nb)
    floor_cmd = [sys.executable, "-m", "papermill", "--no-progress-bar", "-k", "opslib",
                 str(floor_nb), str(tmp / "floor-out.ipynb")]
    run_cmd = [sys.executable, "-m", "opslib", "run", "health", "--reports", str(tmp / "reports")]
    timed(floor_cmd)  # warm caches (bytecode, fonts) for both sides
    timed(run_cmd)
    floors, runs = [], []
    for i in range(args.rounds):
        pair = [(floors, floor_cmd), (runs, run_cmd)]
        for bucket, cmd in (pair if i % 2 == 0 else pair[::-1]):
            bucket.append(timed(cmd))
    f, r = statistics.median(floors), statistics.median(runs)
    print(f"floor (papermill, one cell importing pandas+matplotlib): median {f:.2f}s "
          f"over {args.rounds} ({', '.join(f'{x:.2f}' for x in floors)})")
    print(f"opslib run health (demo, HTML + manifest):               median {r:.2f}s "
          f"over {args.rounds} ({', '.join(f'{x:.2f}' for x in runs)})")
    print(f"ratio run/floor: {r / f:.2f}  (target <= 1.50)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
