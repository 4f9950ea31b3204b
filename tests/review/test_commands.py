"""compare, review --check-replay and triage as a user runs them; the next-step rules."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from opslib.review.compare import compare, metrics_of
from opslib.review.replay import differences
from opslib.review.scan import SITE_DIR, RunSummary, read_run
from opslib.review.triage import READ_ONLY, next_step
from tests.conftest import REPO, TEST_NOTEBOOKS, clean_env, opslib_cli, run_dirs
from tests.inprocess import opslib_run
from tests.review.conftest import degraded, healthy, rewrite


# ----------------------------------------------------------------------------- compare
def test_compare_before_and_after_shows_added_resolved_changed_and_metrics(site):
    a, b = degraded(site), healthy(site)
    proc = opslib_run("compare", str(a), str(b), env=clean_env())
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "findings: 2 added, 5 resolved, 1 changed, 1 unchanged" in out
    assert "+ OK        health-endpoint" in out
    # the stopped machine's check does not run: only the started machine's critical check counts
    assert "- CRITICAL  checks-critical: 1 health check(s) critical on 1 machine(s)" in out
    assert "~ health-latency: CRITICAL → OK (better)" in out
    assert "severity    CRITICAL" in out and "→ OK" in out
    assert "escalation  L1 On-Call Engineer" in out and "→ L0 none" in out
    line = next(ln for ln in out.splitlines() if "health-latency p95" in ln)
    assert "2597 ms" in line and "128 ms" in line and "-2469" in line
    page = Path(out.strip().splitlines()[-1].removeprefix("page: "))
    assert page.parent == site / SITE_DIR / "compare" and page.is_file()
    doc = BeautifulSoup(page.read_text(), "html.parser")
    rows = [r.get_text(" ", strip=True) for r in doc.select("table.findings-diff tbody tr")]
    assert any(r.startswith("resolved checks-critical CRITICAL") for r in rows)
    assert any(r.startswith("changed (better) health-latency CRITICAL OK") for r in rows)


def test_compare_prefers_a_metrics_object_when_findings_have_one(site):
    rewrite(degraded(site), lambda d: d.update(metrics={"error_rate_pct": 7.5,
                                                        "p95_ms": {"value": 2597, "unit": "ms"}}))
    rewrite(healthy(site), lambda d: d.update(metrics={"error_rate_pct": 0.2}))
    c = compare(read_run(degraded(site)), read_run(healthy(site)))
    both, one = c.paired()
    named = {n: (ma.value, mb.value) for n, ma, mb in both}
    assert named["error_rate_pct"] == (7.5, 0.2)
    assert ("p95_ms" in {n for n, _, _ in one})
    assert metrics_of(read_run(degraded(site)))["p95_ms"].unit == "ms"


def test_compare_of_something_that_is_not_a_run_is_a_usage_error(site, tmp_path):
    proc = opslib_run("compare", str(tmp_path), str(healthy(site)), env=clean_env())
    assert proc.returncode == 2 and "is not a run folder" in proc.stderr


# ----------------------------------------------------------------------------- replay
def test_check_replay_reproduces_the_saved_findings_and_catches_a_difference(site):
    run = degraded(site)
    before = sorted(site.rglob("*"))
    proc = opslib_run("review", "--check-replay", str(run), env=clean_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "replay status ok, 7 finding(s) compared" in proc.stdout
    assert "replayed findings EQUAL the saved ones" in proc.stdout
    assert sorted(site.rglob("*")) == before, "the replay leaves nothing in reports/"
    rewrite(run, lambda d: d["findings"][1].update(title="edited by hand"))
    proc = opslib_run("review", "--check-replay", str(run), env=clean_env())
    assert proc.returncode == 1
    assert "DIFFER" in proc.stdout and "finding checks-critical title: saved 'edited by hand'" in proc.stdout
    page = (site / SITE_DIR / "inc-a" / "runs" / f"{run.name}.html")
    opslib_run("review", "--reports", str(site), env=clean_env())
    text = page.read_text()
    assert f"make run issue=health target=replay:{run}" in text
    assert f"python -m opslib review --check-replay {run}" in text


def test_replay_differences_name_what_changed():
    saved = {"status": "ok", "severity": "critical", "escalation": {"level": 1},
             "findings": [{"id": "a", "severity": "critical", "title": "t", "detail": "d",
                           "evidence": ["x"]}, {"id": "b", "severity": "ok", "title": "u"}],
             "actions": [{"id": "s", "command": "fly machine start m", "status": "planned"}]}
    same = json.loads(json.dumps(saved))
    assert differences(saved, same) == []
    other = json.loads(json.dumps(saved))
    other["findings"][0]["evidence"] = ["y"]
    other["findings"].pop()
    other["escalation"]["level"] = 2
    other["actions"][0]["status"] = "applied"
    assert differences(saved, other) == [
        "escalation level: saved 1, replayed 2",
        "finding b: saved, not in the replay",
        "finding a evidence: saved ['x'], replayed ['y']",
        "action s status: saved 'planned', replayed 'applied'"]


def test_check_replay_of_a_folder_that_is_not_a_run(site):
    proc = opslib_run("review", "--check-replay", str(site / "inc-a"), env=clean_env())
    assert proc.returncode == 2 and "is not a run folder" in proc.stderr


# ----------------------------------------------------------------------------- triage
@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    """health as it is, plus a read-only runbook that fails: ``faulty`` raising, as 'memory'."""
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    shutil.copy(REPO / "notebooks" / "health.ipynb", nbs)
    shutil.copy(TEST_NOTEBOOKS / "faulty.ipynb", nbs)
    text = (TEST_NOTEBOOKS / "faulty.ipynb").read_text()
    assert 'fault = \\"none\\"' in text
    (nbs / "memory.ipynb").write_text(text.replace('fault = \\"none\\"', 'fault = \\"raise\\"'))
    return nbs


@pytest.mark.notebook
def test_triage_runs_the_read_only_runbooks_into_one_incident(tmp_path, notebooks):
    reports = tmp_path / "reports"
    env = clean_env(OPSLIB_NOTEBOOKS=str(notebooks), OPSLIB_REPORTS=str(reports))
    proc = opslib_cli("triage", "--scenario", "degraded", "--incident", "tri-1", "--fail-on",
                      "critical", "--jobs", "8", env=env)
    out = proc.stdout
    assert proc.returncode == 1, "worst of: memory failed (1), health critical (3)"
    assert "2 read-only runbook(s) (health, memory)" in out
    skipped = [n for n in READ_ONLY if n not in ("health", "memory")]
    assert f"skipped (not in this checkout): {', '.join(skipped)}" in out
    assert "capped at" in out or "at most 2 at a time" in out
    runs = run_dirs(reports)
    assert {r.parent.name for r in runs} == {"tri-1"} and len(runs) == 2, out + proc.stderr
    lines = out.splitlines()
    order = [ln.split()[1] for ln in lines if ln.startswith(("CRITICAL ", "WARNING ", "UNKNOWN "))]
    assert order == ["health", "memory"], "worst first: critical before a failed run"
    assert "next step: Review health's plan: fly machine start 3d8d9e1fe67e89 -a demo-app" in out
    page = reports / SITE_DIR / "tri-1" / "index.html"
    assert f"incident page: {page}" in out and out.rstrip().endswith("exit: 1")
    doc = BeautifulSoup(page.read_text(), "html.parser")
    assert "Review health's plan" in doc.find(id="next-step").get_text()
    table = [r.get_text(" ", strip=True) for r in doc.select("table.by-runbook tbody tr")]
    assert table[0].startswith("health CRITICAL ok") and "/health latency p95 2597 ms" in table[0]
    assert table[1].startswith("memory") and "failed" in table[1]


def test_triage_with_bad_usage_runs_nothing(tmp_path):
    reports = tmp_path / "reports"
    env = clean_env(OPSLIB_REPORTS=str(reports))
    proc = opslib_cli("triage", "--scenario", "nope", env=env)
    assert proc.returncode == 2 and "no read-only runbook has a demo scenario 'nope'" in proc.stderr
    proc = opslib_cli("triage", "--app", "Bad_App!", env=env)
    assert proc.returncode == 2 and "not a valid Fly app name" in proc.stderr
    assert not reports.exists()


# ----------------------------------------------------------------------------- next step
def summary(runbook: str, severity: str, *, status: str = "ok", level: int = 1, t: str = "1",
            actions=(), findings=(), target: str = "live", verified: bool = True,
            **kw) -> RunSummary:
    return RunSummary(rel=f"i/{t}-{runbook}", incident="i", name=f"{t}-{runbook}", runbook=runbook,
                      target=target, app="my-app", status=status, severity=severity,
                      started_at=f"2026-11-20T03:0{t}:00Z",
                      escalation={"level": level, "team": "T", "reason": f"{runbook} reason"},
                      actions=list(actions), findings=list(findings), verified=verified, **kw)


def test_next_step_follows_the_documented_order():
    crit = {"id": "x", "severity": "critical", "title": "memory 97%"}
    plan = [{"id": "r", "command": "fly machine restart m1 -a my-app", "status": "planned"}]
    auth = summary("auth", "critical", level=3)
    db = summary("database", "critical", level=2)
    mem = summary("memory", "critical", actions=plan, findings=[crit], plan_digest="abc123")
    assert next_step([mem, db, auth]).text.startswith("Escalate to Level 3 (T) now: auth reason")
    assert next_step([mem, db]).text.startswith("Escalate to Level 2 (T): database reason")
    step = next_step([mem, summary("health", "warning")])
    assert step.command == "make run issue=memory app=my-app apply=true confirm=abc123"
    # equally bad: the run with a plan is the next step, its command once per command
    both = [dict(plan[0], id="r2"), dict(plan[0], id="r3")]
    nr = summary("not-responding", "critical", findings=[crit], t="2")
    step = next_step([nr, summary("memory", "critical", actions=both, target="demo")])
    assert step.run.runbook == "memory" and step.command == "fly machine restart m1 -a my-app"
    handoff = summary("logs", "critical", findings=[{"id": "logs.oom", "severity": "critical",
                                                    "title": "OOM kills", "runbook": "memory"}])
    assert next_step([handoff]).text == "Run the memory runbook: logs found “OOM kills”"
    assert next_step([summary("tls", "warning", findings=[{"id": "c", "severity": "warning",
                                                           "title": "expires in 5 days"}])]
                     ).text == "Follow the tls runbook's remediation for: expires in 5 days"
    broken = summary("database", "unknown", status="timeout", error={"evalue": "deadline"})
    assert next_step([broken, summary("health", "ok", level=0)]).text.startswith(
        "Re-run database: it did not complete (timeout: deadline)")
    assert next_step([summary("health", "ok", level=0)]).text.startswith("No action")


def test_next_step_does_not_rest_on_tampered_evidence_when_an_intact_run_exists():
    intact = summary("health", "ok", level=0, t="1")
    tampered = summary("health", "critical", t="2", verified=False)
    assert next_step([intact, tampered]).text.startswith("No action")
    assert next_step([tampered]).run is tampered
