"""Regenerate the bundled demo captures: ``python -m opslib.demo.generate [runbook …]``.

Each scenario's world (``scenarios.py``) is recorded through the runbook's real ``collect``
in record mode, then sequence numbers and timings are normalised so the output is
byte-for-byte deterministic and reviewable in a diff. ``--check`` regenerates into a temporary
folder and fails if the committed captures differ.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import sys
import tempfile
from pathlib import Path

from ..config import Target
from ..evidence import atomic_write_json
from ..redact import Redactor
from ..session import Session
from .scenarios import SCENARIOS
from .world import APP, REF_NOW

CAPTURES = Path(__file__).resolve().parent / "captures"


def _normalise(folder: Path) -> None:
    """Renumber records by (key, recorded order) and round timings, for stable files."""
    records = []
    for path in folder.glob("*/*.json"):
        rec = json.loads(path.read_text(encoding="utf-8"))
        records.append((path.parent.name, rec))
        path.unlink()
    records.sort(key=lambda kr: (kr[1]["key"], kr[1]["seq"]))
    for seq, (kind, rec) in enumerate(records, 1):
        rec["seq"] = seq
        rec["elapsed_ms"] = round(float(rec.get("elapsed_ms", 0.0)), 1) if kind == "http" else 2.0
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in rec["source"])
        atomic_write_json(folder / kind / f"{seq:04d}-{safe}.json", rec)


def generate(runbook: str, scenario: str, out: Path) -> Path:
    _, build = SCENARIOS[runbook][scenario]
    world, collect = build()
    folder = out / runbook / scenario
    if folder.exists():
        shutil.rmtree(folder)
    session = Session("record", raw_dir=folder, redactor=Redactor(),
                      transport_factory=world.transport, capture_backend=world.capture,
                      now=REF_NOW)
    target = Target("live", APP, f"https://{APP}.fly.dev", scenario, None, world.environ)
    with session:
        collect(session, target)
    _normalise(folder)
    meta = json.loads((folder / "session.json").read_text(encoding="utf-8"))
    meta.update(mode="demo", runbook=runbook, scenario=scenario, app=APP,
                description=SCENARIOS[runbook][scenario][0])
    atomic_write_json(folder / "session.json", meta)
    return folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m opslib.demo.generate", description=__doc__)
    p.add_argument("runbooks", nargs="*", help="default: all")
    p.add_argument("--check", action="store_true",
                   help="fail if the committed captures differ from a fresh generation")
    args = p.parse_args(argv)
    names = args.runbooks or sorted(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"error: no demo scenarios for {', '.join(unknown)}", file=sys.stderr)
        return 2
    out = Path(tempfile.mkdtemp()) if args.check else CAPTURES
    try:
        differ = []
        for name in names:
            for scenario in SCENARIOS[name]:
                folder = generate(name, scenario, out)
                if args.check:
                    cmp = filecmp.dircmp(folder, CAPTURES / name / scenario)
                    if _differs(cmp):
                        differ.append(f"{name}/{scenario}")
                else:
                    print(f"wrote {folder}")
        if differ:
            print("captures out of date: " + ", ".join(differ) +
                  "\nrun: python -m opslib.demo.generate", file=sys.stderr)
            return 1
        return 0
    finally:
        if args.check:
            shutil.rmtree(out, ignore_errors=True)


def _differs(cmp: filecmp.dircmp) -> bool:
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return True
    _, mismatch, errors = filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files, shallow=False)
    return bool(mismatch or errors) or any(_differs(sub) for sub in cmp.subdirs.values())


if __name__ == "__main__":
    sys.exit(main())
