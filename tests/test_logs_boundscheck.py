"""The compiled log kernels never read outside their buffers.

The fast build reads bytes without bounds checks (``_kernel.at``/``load_u64``): its offsets
are in range by construction. This test holds it to that: a child process builds the
checked variant (``OPSLIB_LOGS_BOUNDSCHECK=1``: every byte, word and array index checked,
nothing shared with numba's cache), runs it on every layout, the real corpus, fuzzed lines,
lines cut at every length and tiny chunks, and must raise nothing and give exactly what the
fast build gives here.
"""
from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent

FULL = b"2024-05-28T12:00:00.401Z app[148ed193b95089] iad [error] db: connection refused, auth failed 401"
SHIP = (b'{"event":{"provider":"app"},"fly":{"app":{"instance":"148ed193b95089","name":"x"},"region":"iad"},'
        b'"host":"a1b2","log":{"level":"info"},"message":"error: \\"quoted\\" timeout","timestamp":'
        b'"2024-05-28T12:00:00.5Z"}')


def _fuzz(seed: int, count: int) -> bytes:
    """Lines built from the pieces the parsers look for, cut and joined at random."""
    from opslib.logscan import signals as S

    rnd = random.Random(seed)
    words = [kw for kw, _ in S.kernel_keywords()]
    pieces = [b"2024-05-28T12:00:00Z ", b"2024-05-28T12:00:00.123456+02:00 ", b"2024-05-28 12:0", b"app[",
              b"proxy[", b"148ed193b95089", b"] ", b"iad ", b"[info]", b"[error] ", b"response.status=503 ",
              b'error.message="', b'"', b"\\", b"{", b'"message":"', b'"timestamp":"', b"}", b"\x1b[31m", b"\x1b[0m",
              b"\r", b" ", b"GET /api/x HTTP/1.1\" 502 ", b"status=", b"401", b"\xff\xfe", b"12:00:01 ", b"@",
              b"user@example.com", b"PGRST301", b"0123456789abcdef", FULL[:37], SHIP[:90]]
    out = []
    for _ in range(count):
        parts = [rnd.choice(pieces if rnd.random() < 0.7 else words) for _ in range(rnd.randrange(0, 12))]
        line = b"".join(parts)
        if rnd.random() < 0.3:
            line = line[: rnd.randrange(0, len(line) + 1)]
        out.append(line)
    return b"\n".join(out)


def inputs() -> list[tuple[str, bytes, str]]:
    """(name, bytes, format) for every case."""
    from tests.test_logs_samples import (E, dashboard, flyctl_json, fly_text, fly_text_ansi, fly_text_old,
                                         incident, shipper, signal_entries)

    entries = incident() + signal_entries()
    cases = [(f"{render.__name__}", "".join(render(e) + "\n" for e in entries).encode(), "auto")
             for render in (fly_text, fly_text_ansi, fly_text_old, shipper, dashboard)]
    cases.append(("flyctl_json", "".join(flyctl_json(e) for e in entries).encode(), "fly-json"))
    corpus = yaml.safe_load((ROOT / "tests" / "logcorpus" / "corpus.yml").read_text(encoding="utf-8"))
    real = [line for item in corpus for line in item["lines"]]
    cases.append(("corpus-bare", "\n".join(real).encode(), "bare"))
    cases.append(("corpus-fly", "\n".join(fly_text(E(k, "app", "148ed193b95089", "iad", "info", line))
                                        for k, line in enumerate(real)).encode(), "fly-text"))
    for seed in range(3):
        blob = _fuzz(seed, 1500)
        cases += [(f"fuzz{seed}-{fmt}", blob, fmt) for fmt in ("fly-text", "ndjson", "bare")]
    return cases


def cuts() -> list[tuple[str, bytes, str]]:
    """Every length of a full line and of a shipper record as the last bytes of a block."""
    out = []
    for base, fmt in ((FULL, "fly-text"), (SHIP, "ndjson"), (FULL[21:], "bare")):
        for k in range(len(base) + 1):
            out.append((f"{fmt}-cut{k}", base[:k], fmt))
            out.append((f"{fmt}-cut{k}-twice", base[:k] + b"\n" + base[:k], fmt))
    return out


def summary(chunk: int) -> dict[str, object]:
    """What the analysis finds on every case, with ``chunk``-byte blocks; the cut cases go
    straight through one worker's kernels (one block each, no report)."""
    from opslib.logscan import analyze, engine

    engine.CHUNK_BYTES = chunk
    out: dict[str, object] = {}
    for name, data, fmt in inputs():
        try:
            r = analyze(io.BytesIO(data), fmt=fmt, top_templates=10_000)
        except ValueError as exc:  # a source that holds no logs: the same answer either way
            out[name] = f"ValueError: {exc}"
            continue
        out[name] = {"lines": r.lines_read, "parsed": r.parsed, "categories": r.categories,
                     "signals": {s["id"]: s["count"] for s in r.signals},
                     "templates": sorted(zip(r.templates["template"], r.templates["count"].astype(int).tolist())),
                     "instances": {k: int(v) for k, v in r.by_instance["lines"].items()},
                     "minutes": int(r.per_minute["lines"].sum()), "status": r.http["by_class"]}
    for name, data, fmt in cuts():
        w = engine.Worker(fmt, None, None, 3, 0)
        res = w.process(0, bytearray(data))
        out[name] = {"lines": res.lines, "parsed": res.parsed, "categories": w.acc.cat.tolist(),
                     "signals": {k: v.count for k, v in res.signals.items()},
                     "events": len(res.events) + len(res.crashes), "templates": sorted(w.templates().keys()),
                     "status": w.acc.status.nonzero()[0].tolist()}
    return out


def main() -> None:
    from opslib.logscan import _kernel

    assert _kernel.CHECKED, "run with OPSLIB_LOGS_BOUNDSCHECK=1"
    json.dump({str(c): summary(c) for c in (97, 4 << 20)}, sys.stdout)


@pytest.mark.first
@pytest.mark.slow
def test_the_checked_kernels_read_only_their_buffers_and_agree_with_the_fast_ones() -> None:
    env = {**os.environ, "OPSLIB_LOGS_BOUNDSCHECK": "1", "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", "from tests.test_logs_boundscheck import main; main()"],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    from opslib.logscan import _kernel, engine

    assert not _kernel.CHECKED
    saved = engine.CHUNK_BYTES
    try:  # the fast build's answers, while the child compiles the checked one
        fast = {str(chunk): json.loads(json.dumps(summary(chunk))) for chunk in (97, 4 << 20)}
    finally:
        engine.CHUNK_BYTES = saved
    try:
        out, err = child.communicate(timeout=900)
    finally:
        child.kill()
    assert child.returncode == 0, err[-3000:]
    checked = json.loads(out)
    for chunk, answers in fast.items():
        differ = [name for name in answers if answers[name] != checked[chunk].get(name)]
        assert differ == [], (chunk, differ[:5])
