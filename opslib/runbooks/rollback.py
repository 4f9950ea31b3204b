"""Rollback Procedure (seed "Rollback Procedure"): back to the previous good release's image.

The seed's ``fly releases rollback`` does not exist (reference §1): a rollback is
``fly deploy --image registry.fly.io/<app>:deployment-<ID>`` with the image of an earlier
release. Config and secrets are *not* rolled back, and old images can be pruned. This
runbook picks the target release from data (the newest earlier release that completed, with
a different image), plans the rollback as one ``machine.update`` per machine (the API path:
read each machine's config, set the image, send the full config back, wait until it is
started again), and verifies afterwards with /health probes and the machines' images.

A rollback is planned only when the current release is unhealthy, failed, or split across
machines — or when ``to_version`` asks for one explicitly. A healthy app gets no plan.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from ..actions import Action, machine_action
from ..assess import releases
from ..assess.endpoint import assess_probes, probes_frame
from ..assess.fly_api import error_finding
from ..assess.releases import ReleaseData
from ..config import Target
from ..findings import Finding, rank
from ..reads import Read, Readings, gather
from ..session import Session
from ..sources import fly
from ..sources.fly import machine_releases_frame
from ..sources.http import probe_many

SKIP_STATES = ("destroyed", "destroying", "replaced", "migrated")


@dataclass
class Decision:
    """What the rollback will do, and why."""

    current: dict | None = None
    target: dict | None = None
    needed: bool = False
    reasons: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # earlier releases passed over, and why
    findings: list[Finding] = field(default_factory=list)


def pick_target(rel: pd.DataFrame, current: dict | None, to_version: int = 0
                ) -> tuple[dict | None, list[str], str]:
    """The release to roll back to, the releases passed over (with why), and an error text.

    ``to_version`` > 0 asks for that release; otherwise the newest earlier release whose
    status is ``complete`` and whose image differs from the current one.
    """
    if current is None:
        return None, [], "no current release"
    rows = rel.to_dict("records")
    if to_version:
        match = next((r for r in rows if r["version"] == to_version), None)
        if match is None:
            return None, [], (f"v{to_version} is not among the last {len(rows)} releases "
                              f"(v{rows[-1]['version']}–v{rows[0]['version']})")
        if match["version"] == current["version"]:
            return None, [], f"v{to_version} is the current release"
        if not match["image_ref"]:
            return None, [], f"v{to_version} has no image reference"
        return match, [], ""
    skipped = []
    for r in rows:
        if r["version"] is None or r["version"] >= current["version"]:
            continue
        if r["status"] not in releases.GOOD_STATUSES:
            skipped.append(f"v{r['version']}: status {r['status'] or 'unknown'}")
            continue
        if not r["image_ref"] or r["image_ref"] == current["image_ref"]:
            skipped.append(f"v{r['version']}: same image as v{current['version']}")
            continue
        return r, skipped, ""
    return None, skipped, (f"no earlier release among the last {len(rows)} completed with a "
                           "different image")


def decide(data: ReleaseData, app: str, now: datetime, limits: dict[str, tuple[float, float]],
           health_url: str, to_version: int = 0) -> tuple[Decision, dict[str, pd.DataFrame]]:
    """Is a rollback needed, to which release, and the findings that say so."""
    d = Decision()
    deploy_findings, tables = releases.assess(data, app, now, limits, health_url)
    rel = tables["releases"]
    current, _ = releases.current_and_previous(rel)
    d.current = current
    errors = [f for f in deploy_findings if f.id.endswith("-error")]
    d.findings.extend(errors)
    if current is None:
        if not errors:
            d.findings.append(Finding("rollback-no-releases", "unknown",
                                      "no releases: nothing to roll back"))
        return d, tables
    ids = {f.id: f for f in deploy_findings}
    for key in ("deploy-degraded", "deploy-release-failed", "deploy-split", "deploy-unhealthy"):
        if key in ids:
            d.reasons.append(ids[key].title)
    d.findings.extend(f for f in deploy_findings
                      if f.id in ("deploy-current-release", "deploy-degraded",
                                  "deploy-release-failed", "deploy-split", "deploy-in-progress"))
    target, d.skipped, why_not = pick_target(rel, current, to_version)
    d.target = target
    if to_version:
        d.reasons.append(f"to_version={to_version} was asked for")
    d.needed = bool(d.reasons) and ("deploy-unhealthy" not in ids or to_version > 0)
    if "deploy-unhealthy" in ids and not to_version:
        d.findings.append(Finding(
            "rollback-not-the-cause", "warning",
            "the app is unhealthy, but its last deploy is over a day old",
            "a rollback is unlikely to help: run the not-responding runbook; set to_version=N "
            "to roll back anyway", [ids["deploy-unhealthy"].title]))
    if not d.reasons:
        d.findings.append(Finding(
            "rollback-not-needed", "ok",
            f"current release v{current['version']} is healthy: no rollback planned",
            "/health answered OK and every started machine runs it. To roll back anyway "
            "(e.g. a functional bug), run again with to_version=<N>."))
        return d, tables
    if target is None:
        if d.needed:
            d.findings.append(Finding(
                "rollback-no-target", "critical", f"no release to roll back to: {why_not}",
                "`fly releases --image -a " + app + "` lists older images; a fix-forward "
                "deploy is the way out", d.skipped, escalate=2,
                escalate_reason="no good release to roll back to: a complex deployment "
                                "for the Platform Team"))
        return d, tables
    if d.needed:
        d.findings.append(Finding(
            "rollback-target", "info",
            f"roll back v{current['version']} → v{target['version']} "
            f"(status {target['status']}, deployed {target['created_at']})",
            f"image {target['image_ref']}. Equivalent flyctl: "
            f"`fly deploy --image {target['image_ref']} -a {app} --strategy rolling`",
            ([f"passed over {s}" for s in d.skipped]
             + [f"why: {r}" for r in d.reasons]), source="fly-api"))
        d.findings.append(Finding(
            "rollback-caveats", "info",
            "a rollback restores the image only: config and secrets stay as they are now",
            "if the bad deploy changed fly.toml or secrets, revert those by hand; old images "
            "can be pruned by Fly (check the image still exists: `fly releases --image -a "
            f"{app}`). Updating machines directly records no new release in `fly releases`; "
            "`fly deploy --image …` does."))
    return d, tables


def plan_actions(decision: Decision, machines: pd.DataFrame, app: str) -> list[Action]:
    """One ``machine.update`` per machine not already on the target image (rolling order)."""
    if not decision.needed or decision.target is None or machines.empty:
        return []
    image = decision.target["image_ref"]
    to = decision.target["version"]
    actions = []
    # Stopped machines first: updating them cannot hurt traffic; then started ones in turn.
    ordered = (machines.assign(_order=(machines["state"] != "stopped").astype(int))
               .sort_values(["_order", "region", "id"], kind="stable"))
    for r in ordered.itertuples():
        if r.state in SKIP_STATES or r.image == image:
            continue
        actions.append(machine_action(
            "machine.update", app, r.id, id=f"rollback-{r.id}",
            title=f"set machine {r.id} ({r.region}, {r.state}) to v{to}'s image",
            flags=("--image", image), config_patch={"image": image},
            body="current config with config.image replaced",
            basis={"image": r.image, "release": r.release, "state": r.state,
                   "updated_at": r.updated_at},
            reason=f"roll back from v{decision.current['version']} to v{to}"))
    return actions


# --------------------------------------------------------------------------- verify after
@dataclass(frozen=True)
class Verification:
    """What an applied rollback left: the machines again and fresh /health probes."""

    readings: Readings


def verify(session: Session, target: Target, apply_record: dict | None, *, probes_n: int = 3,
           timeout: float = 5.0) -> Verification | None:
    """After an applied rollback: the machines again and fresh /health probes; else None."""
    if not apply_record or apply_record.get("outcome") not in ("applied", "failed"):
        return None
    return Verification(gather(session, target, [
        Read("machines-after", "the app's machines after the rollback",
             lambda api: api.list_machines(), fly.MACHINES),
        Read("probes-after", f"GET {target.health_url} ×{probes_n} after the rollback",
             lambda: probe_many(session, target.health_url, probes_n, timeout=timeout)),
    ]))


def assess_verification(v: Verification | None, decision: Decision, app: str, now: datetime,
                        limits: dict[str, tuple[float, float]], health_url: str) -> list[Finding]:
    if v is None or decision.target is None:
        return []
    image = decision.target["image_ref"]
    after = v.readings["machines-after"]
    mdf = machine_releases_frame(after.value)
    live = mdf[~mdf["state"].isin(SKIP_STATES)] if not mdf.empty else mdf
    behind = live[live["image"] != image] if not live.empty else live
    probe_f = assess_probes(probes_frame(v.readings.value("probes-after", []), now), limits,
                            health_url)
    bad = [f for f in probe_f if rank(f.severity) >= rank("warning")]
    if after.failed:
        return [error_finding("rollback-verify-error", after.error, app,
                              "could not re-read machines after the rollback")]
    if len(behind) or bad:
        return [Finding(
            "rollback-still-failing", "critical",
            f"after the rollback: {len(behind)} machine(s) not on v{decision.target['version']}'s "
            f"image, {len(bad)} health problem(s)",
            "the issue persists after the rollback: escalate (seed: Level 2, Platform Team)",
            [f"{r.id}: {r.image} ({r.state})" for r in behind.itertuples()]
            + [f.title for f in bad], escalate=2,
            escalate_reason="the issue persists after a rollback")]
    return [Finding("rollback-verified", "ok",
                    f"rolled back: {len(live)} machine(s) on v{decision.target['version']}'s "
                    "image, /health OK", image)]


def verify_note(v: Verification | None) -> str:
    if v is None:
        return ("Nothing was applied, so there is nothing to verify yet. After an applied "
                "rollback this step lists the machines again and probes /health.")
    return (f"Re-read after the rollback: {len(v.readings.value('machines-after') or [])} "
            f"machine(s), {len(v.readings.value('probes-after', []))} /health probe(s).")


def plan_note(decision: Decision, app: str) -> str:
    """Markdown shown above the plan: the one-command flyctl equivalent."""
    if decision.target is None or not decision.needed:
        return "No rollback is planned."
    return (f"Rollback to **v{decision.target['version']}**. With flyctl this is one command: "
            f"`fly deploy --image {decision.target['image_ref']} -a {app}` "
            "(add `--strategy immediate` to update every machine at once). opslib's plan below "
            "does the same through the Machines API, one machine at a time.")
