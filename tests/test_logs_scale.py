"""A 100 MB generated log analysed in a child process under a memory ceiling the test asserts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from opslib.logs import synth

ROOT = Path(__file__).resolve().parent.parent
CEILING_MIB = 512
CHILD = """
import json, sys
from opslib.logs import analyze, findings_from_logs
r = analyze(sys.argv[1])
print(json.dumps({"lines": r.lines_read, "parsed": r.parsed, "unparsed": r.unparsed,
                  "errors": r.categories["errors"], "signals": sorted(s["id"] for s in r.signals),
                  "findings": len(findings_from_logs(r)), "json": len(json.dumps(r.to_dict()))}))
"""


def test_100mb_file_under_memory_ceiling(tmp_path: Path) -> None:
    path = synth.write(tmp_path / "fly-100mb.log", "fly-text", 100 * 1024 * 1024, seed=11)
    size = path.stat().st_size
    assert size >= 100 * 1024 * 1024 * 0.95
    expected_lines = path.read_bytes().count(b"\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # The kernels compile once into numba's cache (make setup does it); compiling is not the
    # analysis, and LLVM's peak would be measured here if this run had to do it.
    subprocess.run([sys.executable, "-c", "import opslib.logs; opslib.logs.warm()"],
                   env=env, check=True, timeout=300)
    errfile = tmp_path / "stderr.txt"
    with errfile.open("wb") as errfh:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, stderr=errfh,
                                env=env)
        out = proc.stdout.read()  # type: ignore[union-attr]
        # wait4 reaps this child and returns its own rusage: the analysis' peak RSS
        _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_mib = usage.ru_maxrss / 1024
    assert proc.returncode == 0, errfile.read_text()[-3000:]
    res = json.loads(out)
    assert res["lines"] == expected_lines
    assert res["parsed"] + res["unparsed"] == res["lines"] and res["unparsed"] == 0
    assert {"oom_kill", "proxy_pc01", "pg_too_many_connections"} <= set(res["signals"])
    assert peak_mib <= CEILING_MIB, f"peak RSS {peak_mib:.0f} MiB > {CEILING_MIB} MiB"
