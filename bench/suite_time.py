"""The test suite's wall time against the papermill floor measured in the same session.

The floor is one papermill execution of a notebook that only imports opslib, in the opslib
kernel, the least a real notebook run costs on this machine now. The suite's time is printed
in seconds and as a multiple of that floor, so the figure can be compared across machines
and days (these machines are shared and their speed drifts).

    .venv/bin/python bench/suite_time.py              # the whole suite (make test)
    .venv/bin/python bench/suite_time.py -m "not slow"
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

REPO = Path(__file__).resolve().parent.parent


def papermill_floor(runs: int = 3) -> float:
    """Median seconds of ``papermill`` executing a one-cell notebook (``import opslib``)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "floor.ipynb"
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import opslib")])
        nb.metadata["kernelspec"] = {"name": "opslib", "display_name": "Python (opslib)",
                                     "language": "python"}
        nbformat.write(nb, str(src))
        times = []
        for i in range(runs):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "papermill", "-k", "opslib", "--no-progress-bar",
                            str(src), str(Path(tmp) / f"out{i}.ipynb")], check=True,
                           capture_output=True, cwd=REPO)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", dest="marker", default="", help="pytest -m expression (default: all)")
    import os

    ap.add_argument("-n", dest="workers", default=str((os.cpu_count() or 1) + 1),
                    help="pytest-xdist workers, as make test uses (default: cores + 1; 0: one process)")
    args = ap.parse_args()
    floor_before = papermill_floor()
    cmd = [sys.executable, "-m", "pytest", "-n", args.workers, "-q", "-p", "no:cacheprovider",
           "tests"]
    if args.marker:
        cmd += ["-m", args.marker]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    floor = statistics.mean([floor_before, papermill_floor()])
    tail = [line for line in proc.stdout.splitlines() if " in " in line and "passed" in line]
    print(f"suite ({args.marker or 'all'}, -n {args.workers}): {wall:.1f} s  {tail[-1] if tail else '(no summary)'}")
    print(f"papermill floor (one-cell notebook, median of 3, before and after): {floor:.2f} s")
    print(f"suite / floor: {wall / floor:.0f}x  (the suite costs as much as {wall / floor:.0f} "
          "bare notebook executions)")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
