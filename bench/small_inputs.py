"""Benchmark: log entries analysed by the plain-Python reference against the compiled kernels.

A runbook reads a few thousand logs-API entries in a fresh process (a notebook kernel), so
each measurement is one fresh ``python`` process: import, analyse, report. For each size both
paths run interleaved ``--repeat`` times (the kernel path forced by setting
``analysis.SMALL_ENTRIES`` to -1); the medians and the ratio reference / kernels are printed.
``analysis.SMALL_ENTRIES`` should sit where the ratio crosses 1.

    .venv/bin/python bench/small_inputs.py [--sizes 500,3000,6000,10000,20000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from opslib.logscan import analysis, synth
n, force_kernels = int(sys.argv[1]), sys.argv[2] == "1"
items = [{"timestamp": synth._ts_nano(t), "message": m, "level": lv, "instance": i, "region": r,
          "provider": p} for t, p, i, r, lv, m in synth.entries(n, seed=5)][:n]
t1 = time.perf_counter()
if force_kernels:
    analysis.SMALL_ENTRIES = -1
report = analysis.analyze(items)
t2 = time.perf_counter()
print(json.dumps({"seconds": (t2 - t1) + 0.0, "import": t1 - t0, "lines": report.lines_read,
                  "numba": "numba" in sys.modules}))
"""


def once(n: int, kernels: bool) -> float:
    """Seconds from the first analysis import to the report (entry building excluded)."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(n), "1" if kernels else "0"], cwd=REPO,
                         capture_output=True, text=True, timeout=600, check=True)
    got = json.loads(out.stdout)
    assert got["numba"] == kernels or n > 6_000, got
    return got["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500,3000,6000,10000,20000")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    once(10, True)  # the kernels are in numba's cache before anything is timed
    print(f"{'entries':>8} {'reference s':>12} {'kernels s':>10} {'ratio':>6}")
    for n in (int(x) for x in args.sizes.split(",")):
        ref, ker = [], []
        for _ in range(args.repeat):
            ref.append(once(n, False))
            ker.append(once(n, True))
        r, k = statistics.median(ref), statistics.median(ker)
        print(f"{n:>8} {r:>12.3f} {k:>10.3f} {r / k:>6.2f}")


if __name__ == "__main__":
    main()
