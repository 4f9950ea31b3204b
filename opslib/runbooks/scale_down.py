"""Emergency Scale Down (seed "Emergency Scale Down"): to zero, and back as it was.

``direction="down"`` plans a stop of every started machine (the seed's ``fly scale count 0``)
and records the prior state — machine ids, count, regions, sizes, images — in the findings
and in each planned action, so that the same capacity can be restored. ``direction="up"``
plans the way back: from a prior run's record (``restore_from`` = that run's folder) it starts
exactly the machines that were running; without a record it starts the stopped machines
(``count`` of them, or all).

Why stop rather than ``fly scale count 0``: flyctl's scale count *destroys* machines to reach
the count, so scaling back up creates new ones from the current config. Stopping keeps the
machines (config, volumes, size), and a stopped machine is restored with
``fly machine start``. One catch, checked here: a machine whose service has ``autostart``
on is started again by Fly's proxy on the next request.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..actions import Action, machine_action
from ..assess.fly_api import error_finding
from ..config import Target
from ..errors import UsageError
from ..findings import Finding
from ..reads import Read, Readings, gather, measured
from ..session import Session
from ..sources import fly
from ..sources.fly_models import Machine

DIRECTIONS = ("down", "up")
STATE_COLUMNS = ["id", "name", "region", "state", "size", "cpu_kind", "cpus", "memory_mb",
                 "process_group", "image", "autostart", "updated_at"]
GONE = ("destroyed", "destroying", "replaced", "migrated")


@dataclass(frozen=True)
class ScaleData:
    readings: Readings

    machines = measured()  # list[Machine] | None

    @property
    def record(self) -> dict[str, Any] | None:
        """The prior run's record (``restore_from``), when it could be read."""
        rec = self.readings.value("record")
        return rec if rec and not rec.get("error") else None

    @property
    def record_error(self) -> str:
        return ((self.readings.value("record") or {}).get("error")) or ""


def _resolve(path: str) -> Path:
    """``path`` as given, else under the checkout or reports/ (runs execute elsewhere)."""
    from ..catalog import REPO_ROOT
    from ..config import env

    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    reports = Path(env("OPSLIB_REPORTS") or REPO_ROOT / "reports")
    for candidate in (REPO_ROOT / p, reports / p, reports.parent / p):
        if candidate.exists():
            return candidate
    return REPO_ROOT / p


def _read_record(path: str) -> dict[str, Any]:
    """The scale-down record in a prior run's folder (or its findings.json)."""
    p = _resolve(path)
    f = p / "findings.json" if p.is_dir() else p
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"error": f"cannot read {f}: {exc}"}
    stops = [a for a in data.get("actions") or [] if a.get("kind") == "machine.stop"]
    return {"path": str(f), "runbook": data.get("runbook"), "app": data.get("app"),
            "reference_time": data.get("reference_time"),
            "plan_digest": data.get("plan_digest"),
            "outcome": (data.get("apply") or {}).get("outcome"),
            "machines": [{"id": a["params"]["machine_id"], "status": a.get("status"),
                          **(a.get("basis") or {})} for a in stops]}


def collect(session: Session, target: Target, *, restore_from: str = "") -> ScaleData:
    """The machines, and the record to restore from (read through the session, so a replay
    sees the same record without the folder)."""
    reads = [Read("machines", "the app's machines, their sizes and regions",
                  lambda api: api.list_machines(), fly.MACHINES)]
    if restore_from:
        reads.append(Read("record", f"the scale-down record in {restore_from}",
                          lambda: session.capture("file", "restore-record", restore_from,
                                                  lambda: _read_record(restore_from),
                                                  op="read restore record", target=restore_from)))
    return ScaleData(gather(session, target, reads))


# --------------------------------------------------------------------------- analysis
def size_name(cpu_kind: str, cpus: Any) -> str:
    """Fly's preset name for a guest, e.g. ``shared-cpu-1x`` / ``performance-2x``."""
    if not cpu_kind or not cpus:
        return ""
    return f"shared-cpu-{cpus}x" if cpu_kind == "shared" else f"{cpu_kind}-{cpus}x"


def state_frame(machines: list[Machine] | None) -> pd.DataFrame:
    """The state to record and restore (columns: STATE_COLUMNS)."""
    return pd.DataFrame([{
        "id": m.id, "name": m.name, "region": m.region, "state": m.state,
        "size": size_name(m.guest.cpu_kind, m.guest.cpus), "cpu_kind": m.guest.cpu_kind,
        "cpus": m.guest.cpus, "memory_mb": m.guest.memory_mb, "process_group": m.process_group,
        "image": m.image, "autostart": m.autostart, "updated_at": m.updated_at}
        for m in machines or []], columns=STATE_COLUMNS)


def _summary(df: pd.DataFrame) -> str:
    if df.empty:
        return "none"
    regions = ", ".join(f"{r}×{n}" for r, n in sorted(Counter(df["region"]).items()))
    sizes = ", ".join(f"{s or '?'}/{m} MB×{n}" for (s, m), n in
                      sorted(Counter(zip(df["size"], df["memory_mb"])).items(), key=str))
    return f"{len(df)} (regions {regions}; sizes {sizes})"


@dataclass
class ScalePlan:
    direction: str
    findings: list[Finding] = field(default_factory=list)
    stop: list[dict] = field(default_factory=list)
    start: list[dict] = field(default_factory=list)
    prior: pd.DataFrame | None = None


def assess(data: ScaleData, app: str, *, direction: str = "down", count: int = 0) -> ScalePlan:
    """Findings and the machines to stop or start, for ``direction``."""
    if direction not in DIRECTIONS:
        raise UsageError(f"direction must be 'down' or 'up', got {direction!r}")
    plan = ScalePlan(direction)
    out = plan.findings
    if data.readings["machines"].failed:
        out.append(error_finding("scale-machines-error", data.readings["machines"].error, app,
                                 "could not list machines"))
        return plan
    if data.machines is None:
        return plan
    df = state_frame(data.machines)
    df = df[~df["state"].isin(GONE)] if not df.empty else df
    plan.prior = df
    started = df[df["state"] == "started"] if not df.empty else df
    stopped = df[df["state"].isin(["stopped", "suspended"])] if not df.empty else df
    out.append(Finding(
        "scale-prior-state", "info",
        f"{app} now: {len(started)} started of {len(df)} machines; "
        f"started: {_summary(started)}",
        "recorded so the same capacity can be restored (`fly scale show` shows the same)",
        [f"{r.id} {r.region} {r.state} {r.size} {r.memory_mb} MB {r.process_group} {r.image}"
         for r in df.itertuples()]))
    if df.empty:
        out.append(Finding("scale-no-machines", "warning", f"{app} has no machines",
                           f"nothing to stop or start; `fly scale count 2 -a {app}` creates "
                           "machines from the current config"))
        return plan
    if direction == "down":
        if started.empty:
            out.append(Finding(
                "scale-already-down", "warning",
                f"{app} is already at zero: all {len(df)} machines are stopped",
                "the app serves no traffic; to restore run again with direction=up"))
            return plan
        plan.stop = started.to_dict("records")
        out.append(Finding(
            "scale-down-plan", "warning",
            f"planned: stop all {len(started)} started machines — {app} will serve no traffic",
            "seed: `fly scale count 0`, which destroys machines; opslib stops them instead so "
            "they come back as they were (`direction=up restore_from=<this run>`)",
            [f"{r['id']} {r['region']} {r['size']} {r['memory_mb']} MB" for r in plan.stop],
            escalate=2, escalate_reason="taking production to zero is an infrastructure "
                                        "change: tell the Platform Team (seed Level 2)"))
        auto = started[started["autostart"]]
        if len(auto):
            out.append(Finding(
                "scale-autostart", "warning",
                f"{len(auto)} machine(s) have autostart on: Fly's proxy will start them again "
                "on the next request",
                "stopping alone will not keep the app down while traffic arrives; release "
                f"its IPs (`fly ips list -a {app}`) or use `fly scale count 0` (destroys)",
                list(auto["id"])))
        return plan
    # direction == "up"
    targets = _restore_targets(data, df, plan, app)
    if targets is None:
        targets = stopped
        if count > 0:
            targets = targets.head(max(count - len(started), 0))
    if targets.empty:
        out.append(Finding("scale-nothing-to-restore", "ok",
                           f"nothing to start: {len(started)} of {len(df)} machines already started",
                           "no scale-up is needed"))
        return plan
    plan.start = targets.to_dict("records")
    out.append(Finding(
        "scale-up-plan", "warning" if started.empty else "info",
        f"planned: start {len(targets)} machine(s) — {_summary(targets)}",
        ("the app serves no traffic until they start; " if started.empty else "")
        + f"seed: `fly scale count {len(started) + len(targets)} -a {app}`",
        [f"{r['id']} {r['region']} {r['size']} {r['memory_mb']} MB" for r in plan.start]))
    return plan


def _restore_targets(data: ScaleData, df: pd.DataFrame, plan: ScalePlan,
                     app: str) -> pd.DataFrame | None:
    """The machines the prior record says were running; None without a record."""
    out = plan.findings
    if data.record_error:
        out.append(Finding("scale-record-unreadable", "unknown", "restore record unreadable",
                           f"{data.record_error}; give the run folder of the scale-down run"))
        return df.iloc[0:0]
    rec = data.record
    if rec is None:
        return None
    if rec.get("app") and rec["app"] != app:
        out.append(Finding("scale-record-other-app", "unknown",
                           f"restore record is for app {rec['app']!r}, not {app!r}",
                           f"from {rec['path']}"))
        return df.iloc[0:0]
    recorded = rec.get("machines") or []
    if not recorded:
        out.append(Finding("scale-record-empty", "unknown",
                           "the restore record holds no scale-down plan",
                           f"{rec['path']} has no machine.stop actions"))
        return df.iloc[0:0]
    by_id = df.set_index("id")
    missing = [m for m in recorded if m["id"] not in by_id.index]
    if missing:
        out.append(Finding(
            "scale-record-missing", "warning",
            f"{len(missing)} recorded machine(s) no longer exist",
            f"create replacements with `fly scale count {len(recorded)} -a {app}`",
            [f"{m['id']} {m.get('region', '')}" for m in missing]))
    changed = [m for m in recorded if m["id"] in by_id.index and m.get("memory_mb") is not None
               and by_id.loc[m["id"], "memory_mb"] != m.get("memory_mb")]
    if changed:
        out.append(Finding(
            "scale-record-size-changed", "warning",
            f"{len(changed)} machine(s) changed size since the record",
            "they start with their current size",
            [f"{m['id']}: {m.get('memory_mb')} MB then, {by_id.loc[m['id'], 'memory_mb']} MB now"
             for m in changed]))
    out.append(Finding("scale-record", "info",
                       f"restoring the {len(recorded)} machine(s) recorded at "
                       f"{rec.get('reference_time')} (plan {rec.get('plan_digest')}, "
                       f"{rec.get('outcome')})", rec["path"]))
    ids = [m["id"] for m in recorded if m["id"] in by_id.index]
    return df[df["id"].isin(ids) & df["state"].isin(["stopped", "suspended"])]


def plan_actions(plan: ScalePlan, app: str) -> list[Action]:
    """``machine.stop`` (down) or ``machine.start`` (up), one per machine, each carrying the
    machine's region, size and image as recorded prior state."""
    actions = []
    for kind, verb, rows in (("machine.stop", "stop", plan.stop),
                             ("machine.start", "start", plan.start)):
        for r in rows:
            actions.append(machine_action(
                kind, app, r["id"],
                title=f"{verb} machine {r['id']} ({r['region']}, {r['size']} {r['memory_mb']} MB)",
                basis={"state": r["state"], "region": r["region"], "size": r["size"],
                       "cpu_kind": r["cpu_kind"], "cpus": r["cpus"],
                       "memory_mb": r["memory_mb"], "image": r["image"],
                       "process_group": r["process_group"], "updated_at": r["updated_at"]},
                reason="emergency scale-down" if verb == "stop" else "restore capacity"))
    return actions


def verify(session: Session, target: Target, apply_record: dict | None) -> pd.DataFrame | None:
    """After an applied plan: the machines' states again (None when nothing was applied)."""
    if not apply_record or apply_record.get("outcome") not in ("applied", "failed"):
        return None
    again = collect(session, target)
    return state_frame(again.machines) if again.machines is not None else None


def verify_note(after: pd.DataFrame | None) -> str:
    if after is None:
        return ("Nothing was applied, so the machines are as shown above. After an applied "
                "plan this step lists them again.")
    counts = ", ".join(f"{s} ×{n}" for s, n in sorted(Counter(after["state"]).items()))
    rows = "\n".join(f"| {r.id} | {r.region} | {r.state} | {r.size} | {r.memory_mb} |"
                     for r in after.itertuples())
    return (f"After the plan: {counts or 'no machines'}.\n\n| machine | region | state | size "
            f"| memory MB |\n|---|---|---|---|---|\n{rows}")
