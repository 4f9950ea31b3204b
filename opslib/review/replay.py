"""Replay check: re-run a saved run against its own capture and compare the findings.

The replay runs through the ordinary runner (``prepare``/``execute`` with
``target="replay:<run>"``) into a temporary reports folder, so it leaves nothing behind in
``reports/``. Compared, as saved vs replayed: the run's status, severity and escalation level,
and every finding (by id: severity, title, detail, evidence) and action (by id: command,
status). What is expected to differ is not compared: times, the target kind (a replay of a
demo run is a ``replay``), and the exit code.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..evidence import MANIFEST, verify_run

FINDING_KEYS = ("severity", "title", "detail", "evidence")


@dataclass
class ReplayCheck:
    run: Path
    replay_status: str
    differences: list[str] = field(default_factory=list)
    compared: int = 0
    saved_verified: bool = True

    @property
    def equal(self) -> bool:
        return not self.differences

    def text(self) -> str:
        lines = [f"replay of {self.run}: replay status {self.replay_status}, "
                 f"{self.compared} finding(s) compared"]
        if not self.saved_verified:
            lines.append("warning: the saved run FAILS verification (make verify): it is being "
                         "compared as it is now on disk")
        if self.equal:
            lines.append("replayed findings EQUAL the saved ones")
        else:
            lines.append(f"replayed findings DIFFER from the saved ones ({len(self.differences)}):")
            lines += [f"  {d}" for d in self.differences]
        return "\n".join(lines)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / "findings.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path} has no findings.json: nothing to compare a replay with") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}/findings.json is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}/findings.json is not a findings object")
    return data


def differences(saved: dict[str, Any], replayed: dict[str, Any]) -> list[str]:
    """What differs between two findings.json documents, in words (empty: equal)."""
    out = []
    for key in ("status", "severity"):
        if saved.get(key) != replayed.get(key):
            out.append(f"{key}: saved {saved.get(key)!r}, replayed {replayed.get(key)!r}")
    la = (saved.get("escalation") or {}).get("level")
    lb = (replayed.get("escalation") or {}).get("level")
    if la != lb:
        out.append(f"escalation level: saved {la!r}, replayed {lb!r}")
    fa = {f.get("id"): f for f in saved.get("findings") or [] if isinstance(f, dict)}
    fb = {f.get("id"): f for f in replayed.get("findings") or [] if isinstance(f, dict)}
    for fid in fa.keys() - fb.keys():
        out.append(f"finding {fid}: saved, not in the replay")
    for fid in fb.keys() - fa.keys():
        out.append(f"finding {fid}: in the replay, not saved")
    for fid in sorted(fa.keys() & fb.keys(), key=str):
        for k in FINDING_KEYS:
            if fa[fid].get(k) != fb[fid].get(k):
                out.append(f"finding {fid} {k}: saved {fa[fid].get(k)!r}, "
                           f"replayed {fb[fid].get(k)!r}")
    aa = {a.get("id"): a for a in saved.get("actions") or [] if isinstance(a, dict)}
    ab = {a.get("id"): a for a in replayed.get("actions") or [] if isinstance(a, dict)}
    for aid in sorted(aa.keys() ^ ab.keys(), key=str):
        out.append(f"action {aid}: {'saved only' if aid in aa else 'replay only'}")
    for aid in sorted(aa.keys() & ab.keys(), key=str):
        for k in ("command", "status"):
            if aa[aid].get(k) != ab[aid].get(k):
                out.append(f"action {aid} {k}: saved {aa[aid].get(k)!r}, replayed {ab[aid].get(k)!r}")
    return out


def check_replay(run: Path, *, timeout: float | None = None) -> ReplayCheck:
    """Replay ``run`` into a temporary folder and compare its findings with the saved ones.

    Raises ``UsageError`` when the path is not a run with a capture or its runbook is gone.
    """
    from ..runner import DEFAULT_TIMEOUT_S, RunRequest, execute, prepare

    run = Path(run)
    if not (run / MANIFEST).exists() and not (run / "findings.json").exists():
        raise UsageError(f"{run} is not a run folder (no {MANIFEST} or findings.json)",
                         hint="give reports/<incident>/<run>")
    saved = _load(run)
    runbook = saved.get("runbook") or ""
    if not isinstance(runbook, str) or not runbook:
        raise UsageError(f"{run}/findings.json does not name its runbook")
    tmp = Path(tempfile.mkdtemp(prefix="opslib-replay-check-"))
    try:
        prep = prepare(RunRequest(runbook=runbook, target=f"replay:{run.resolve()}",
                                  incident=str(saved.get("incident") or "") or "replay-check",
                                  timeout=timeout or DEFAULT_TIMEOUT_S, reports=tmp))
        outcome = execute(prep)
        replayed = _load(outcome.path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    diffs = differences(saved, replayed)
    return ReplayCheck(run, outcome.status, diffs, len(saved.get("findings") or []),
                       verify_run(run).ok)


__all__ = ["ReplayCheck", "check_replay", "differences"]
