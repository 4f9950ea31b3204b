"""Benchmark: triage (read-only runbooks concurrently) vs the same runs one after another.

Prints the wall time of each way, their ratio (target: at most 0.6 on 2 cores) and the peak
memory of the whole process tree (this process, papermill children and their kernels),
sampled every 50 ms.

Which runbooks: every read-only runbook of this checkout, on the demo target. While fewer than
``--min-runbooks`` of them exist (the others are still being written), it uses STAND-INS: the
health notebook copied under the missing names, each replaying one saved health run — the
same papermill + kernel + evidence work per runbook, so the concurrency is measured honestly;
the output says so.

    .venv/bin/python bench/triage.py [--jobs N] [--min-runbooks 4] [--repeat 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from opslib.catalog import notebooks_dir  # noqa: E402
from opslib.review import triage as tri  # noqa: E402
from opslib.runner import RunRequest, execute, prepare  # noqa: E402


class PeakRSS:
    """Peak resident memory of this process and all its descendants."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.05)

    def __enter__(self) -> "PeakRSS":
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=0, help="default: the number of cores")
    ap.add_argument("--min-runbooks", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=1, help="interleaved repeats, best of each")
    args = ap.parse_args()
    load = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-triage-"))
    try:
        present, missing = tri.available()
        target, names = "demo", tuple(present)
        if len(present) < args.min_runbooks:
            seed = prepare(RunRequest("health", scenario="degraded", reports=work / "seed"))
            capture = execute(seed).path
            nbs = work / "notebooks"
            nbs.mkdir()
            for name in tri.READ_ONLY:
                src = notebooks_dir() / f"{name}.ipynb"
                shutil.copy(src if src.is_file() else notebooks_dir() / "health.ipynb",
                            nbs / f"{name}.ipynb")
            os.environ["OPSLIB_NOTEBOOKS"] = str(nbs)
            target, names = f"replay:{capture}", tri.READ_ONLY
            print(f"only {len(present)} read-only runbook(s) here ({', '.join(present)}): using "
                  f"stand-ins — health's notebook under the names {', '.join(missing)}, "
                  "each replaying one saved health run")
        jobs = max(1, min(args.jobs or tri.default_jobs(), tri.default_jobs()))
        print(f"{len(names)} runbooks, {os.cpu_count()} cores, triage with {jobs} at a time")

        def preps(tag: str) -> list:
            return tri.plan(target=target, incident=f"bench-{tag}", reports=work / tag,
                            names=names)[0]

        seq_s = par_s = float("inf")
        mem_seq = mem_par = 0
        for i in range(args.repeat):  # interleaved, best of each: other load hits both alike
            seq = preps(f"sequential-{i}")
            with PeakRSS() as mem:
                t = time.perf_counter()
                for p in seq:
                    execute(p)
                seq_s = min(seq_s, time.perf_counter() - t)
            mem_seq = max(mem_seq, mem.peak)
            par = preps(f"triage-{i}")
            with PeakRSS() as mem:
                t = time.perf_counter()
                outcomes, errors = tri.execute_all(par, jobs=jobs)
                par_s = min(par_s, time.perf_counter() - t)
            mem_par = max(mem_par, mem.peak)
        if errors:
            print("errors:", errors)
        print(f"load average before: {load[0]:.1f}, after: {os.getloadavg()[0]:.1f} "
              f"(other work on the machine slows both ways)")
        print(f"one after another: {seq_s:6.1f} s   peak memory {mem_seq / 2**20:6.0f} MiB")
        print(f"triage:            {par_s:6.1f} s   peak memory {mem_par / 2**20:6.0f} MiB")
        print(f"ratio triage / one after another: {par_s / seq_s:.2f} (target <= 0.6 on 2 cores)")
        print(f"statuses: {', '.join(sorted(o.status for o in outcomes))}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
