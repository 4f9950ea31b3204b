"""Benchmark: the review site over 1,000 runs vs a plain directory walk of the same tree.

Generates ``--runs`` realistic run folders (the files a health run leaves, at their real sizes:
a ~300 KB notebook HTML, the notebook, findings, timeline, raw captures, a PNG chart, and the
SHA-256 manifest written by ``opslib.evidence.write_manifest``) spread over incidents, with a
few runs damaged (tampered, unreadable manifest, newer findings schema), then prints:

* the time of ``os.walk`` over the tree (the baseline, warm page cache, best of 3);
* ``review`` cold (no cache: every run read and every file hashed), incremental with nothing
  changed, and incremental after 10 new runs and one tampered run — each as a ratio to the walk;
* what the reader gets: pages, the index's size and runs per page.

    .venv/bin/python bench/review_index.py [--runs 1000] [--per-incident 25] [--keep DIR]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opslib.evidence import write_manifest  # noqa: E402
from opslib.review.site import build_site  # noqa: E402

T0 = datetime(2026, 11, 20, 3, 0, tzinfo=timezone.utc)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _png() -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    ax.bar(range(1, 6), [1840, 2630, 5000, 2410, 1955], color=["g", "r", "r", "r", "g"])
    ax.set_title("/health probes")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class Generator:
    """Writes run folders shaped like a real ``health`` run."""

    def __init__(self, root: Path, html_kb: int, seed: int = 7) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.png = _png()
        filler = os.urandom(html_kb * 512).hex()
        self.html = f"<!DOCTYPE html><html><body><pre>{filler}</pre></body></html>"
        self.nb = json.dumps({"cells": [{"cell_type": "code", "source": "x = 1\n" * 40,
                                         "outputs": [{"text": os.urandom(12000).hex()}]}],
                              "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
        self.n = 0

    def run(self, incident: str, started: datetime) -> Path:
        self.n += 1
        sev = self.rng.choices(["ok", "warning", "critical"], [5, 3, 2])[0]
        status = "failed" if self.rng.random() < 0.03 else "ok"
        folder = self.root / incident / f"{started:%Y%m%dT%H%M%SZ}-health-{self.n}"
        (folder / "raw" / "http").mkdir(parents=True)
        (folder / "raw" / "config").mkdir()
        (folder / "raw" / "pg").mkdir()
        (folder / "charts").mkdir()
        finished = started + timedelta(seconds=self.rng.uniform(5, 15))
        lat = self.rng.randint(90, 3000)
        findings = [
            {"id": "health-latency", "severity": sev,
             "title": f"/health latency p95 {lat} ms (p50 {lat * 4 // 5}, max {lat + 40})",
             "detail": "thresholds: warning > 500 ms, critical > 2000 ms", "evidence": []},
            {"id": "health-5xx", "severity": "warning" if sev != "ok" else "ok",
             "title": f"{self.rng.randint(0, 5)}/5 probes returned a server error",
             "detail": "statuses: 503", "evidence": ["probe 2: HTTP 503", "probe 4: HTTP 503"]},
            {"id": "db-ok", "severity": "ok", "title": "database answered: primary",
             "detail": "", "evidence": []},
        ]
        actions = [] if sev == "ok" else [{
            "id": "start-3d8d9e1fe67e89", "kind": "machine.start",
            "title": "start stopped machine 3d8d9e1fe67e89 (ams)",
            "command": "fly machine start 3d8d9e1fe67e89 -a demo-app",
            "status": self.rng.choice(["planned", "planned", "applied"])}]
        doc = {"schema": 1, "runbook": "health", "target": "demo", "scenario": "degraded",
               "app": "demo-app", "incident": incident, "status": status, "severity": sev,
               "started_at": _iso(started), "finished_at": _iso(finished),
               "findings": findings,
               "escalation": {"level": 1 if sev != "ok" else 0, "team": "On-Call Engineer",
                              "reason": findings[0]["title"]},
               "actions": actions, "exit_code": 0 if status == "ok" else 1}
        (folder / "findings.json").write_text(json.dumps(doc, indent=2))
        (folder / "parameters.json").write_text(json.dumps(
            {"runbook": "health", "target": "demo", "parameters": {"scenario": "degraded"}}))
        events = []
        for i in range(9):
            t = started + timedelta(seconds=2 + i * 0.3)
            events.append({"ts": _iso(t), "source": "app", "operation": "probe",
                           "target": "GET https://demo-app.fly.dev/health",
                           "duration_ms": self.rng.uniform(80, 3000),
                           "outcome": self.rng.choice(["http 200", "http 200", "http 503"]),
                           "size": 60})
            rec = {"seq": i + 1, "source": "app", "key": f"app GET /health#{i}",
                   "request": {"method": "GET", "url": "https://demo-app.fly.dev/health"},
                   "response": {"status": 200, "body": "x" * self.rng.randint(200, 2500)}}
            sub = ("http", "config", "pg")[i % 3]
            (folder / "raw" / sub / f"{i + 1:04d}-app.json").write_text(json.dumps(rec))
        events += [{"ts": _iso(started), "source": "runner", "operation": "run started",
                    "target": "health", "outcome": "ok"},
                   {"ts": _iso(finished), "source": "runner", "operation": "run finished",
                    "target": "health", "outcome": status}]
        (folder / "timeline.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
        (folder / "raw" / "session.json").write_text(json.dumps({"schema": 1, "now": _iso(T0)}))
        (folder / "run.log").write_text("opslib run health\n" * 40)
        (folder / "health.ipynb").write_text(self.nb)
        (folder / "health.html").write_text(self.html)
        (folder / "charts" / "health-latency.png").write_bytes(self.png)
        write_manifest(folder, {"runbook": "health", "target": "demo", "app": "demo-app",
                                "incident": incident, "started_at": _iso(started),
                                "finished_at": _iso(finished), "status": status,
                                "exit_code": doc["exit_code"], "operator": "bench"})
        return folder


def walk(root: Path) -> tuple[float, int]:
    best, files = float("inf"), 0
    for _ in range(3):
        t = time.perf_counter()
        files = sum(len(f) for _, _, f in os.walk(root))
        best = min(best, time.perf_counter() - t)
    return best, files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--per-incident", type=int, default=25)
    ap.add_argument("--html-kb", type=int, default=300, help="size of each notebook HTML")
    ap.add_argument("--keep", default="", help="generate into this folder and keep it")
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-review-"))
    reports = root / "reports"
    try:
        gen = Generator(reports, args.html_kb)
        t = time.perf_counter()
        runs = []
        for i in range(args.runs):
            inc = f"inc-{i // args.per_incident:04d}"
            runs.append(gen.run(inc, T0 + timedelta(minutes=i * 3)))
        gen_s = time.perf_counter() - t
        # damage a few, as a real history has
        f = runs[3] / "findings.json"
        f.write_text(f.read_text().replace("database answered", "tampered"))
        (runs[5] / "EVIDENCE_MANIFEST.json").write_text("{not json")
        doc = json.loads((runs[7] / "findings.json").read_text())
        doc["schema"] = 2
        (runs[7] / "findings.json").write_text(json.dumps(doc))
        (runs[9] / "run.log").unlink()
        size = sum(p.stat().st_size for p in reports.rglob("*") if p.is_file())
        print(f"generated {args.runs} runs ({size / 1e6:.0f} MB, "
              f"{args.runs // args.per_incident} incidents) in {gen_s:.1f}s under {reports}")

        base, files = walk(reports)
        print(f"os.walk of the tree ({files} files): {base * 1000:.1f} ms (best of 3)")

        cold = build_site(reports)
        print(f"review cold:         {cold.seconds:7.2f} s  = {cold.seconds / base:7.1f}x walk  "
              f"({cold.reread} runs read and verified, {cold.written} pages written)")
        warm = build_site(reports)
        print(f"review incremental:  {warm.seconds:7.2f} s  = {warm.seconds / base:7.1f}x walk  "
              f"(nothing changed: {warm.reread} runs read, {warm.written} pages written)")
        for i in range(10):
            gen.run("inc-new", T0 + timedelta(days=30, minutes=i))
        f = runs[11] / "findings.json"
        f.write_text(f.read_text().replace("database answered", "tampered again"))
        base2, _ = walk(reports)
        inc = build_site(reports)
        print(f"review after change: {inc.seconds:7.2f} s  = {inc.seconds / base2:7.1f}x walk  "
              f"(10 new runs + 1 tampered: {inc.reread} runs read, {inc.written} pages written)")
        index = reports / "index.html"
        pages = sum(1 for _ in (reports / "_review").rglob("*.html")) + 1
        print(f"site: {pages} pages; index.html {index.stat().st_size / 1024:.0f} KB "
              f"(20 incidents a page, 8 latest runs each; every failing run listed at the top: "
              f"{len(inc.failing)} fail verification, {len(inc.unreadable)} unreadable)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
