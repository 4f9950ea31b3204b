"""The demo incidents: every read-only runbook sees one world, so the incident tells one story.

Each runbook runs in process (tests/inprocess.py) on the same scenario into one incident; the
evidence is then read back as ``make triage`` and the review site read it.
"""
from __future__ import annotations

import json

import pytest

from opslib.demo.scenarios import SCENARIOS
from opslib.evidence import verify_run
from opslib.demo.scenarios.incidents import INCIDENTS
from opslib.review.scan import load_run
from opslib.review.triage import READ_ONLY, next_step
from tests.conftest import clean_env, findings, only_run, opslib_cli, run_dirs
from tests.inprocess import opslib_run
from tests.servers import LocalHTTPServer, Reply


def _triage(reports, scenario: str) -> dict:
    env = clean_env(OPSLIB_REPORTS=str(reports))
    for runbook in READ_ONLY:
        proc = opslib_run("run", runbook, "--scenario", scenario, "--incident", scenario, env=env)
        assert proc.returncode == 0, (runbook, proc.stdout, proc.stderr)
    runs = {r.runbook: r for r in (load_run(d, reports) for d in run_dirs(reports))}
    assert set(runs) == set(READ_ONLY)
    return runs


def _titles(run) -> str:
    return " | ".join(f"{f.get('severity')}: {f.get('title')}" for f in run.findings)


def test_every_read_only_runbook_has_both_incidents():
    for runbook in READ_ONLY:
        assert set(INCIDENTS) <= set(SCENARIOS[runbook]), runbook


def test_connection_leak_one_root_cause_in_every_runbook_that_sees_it(reports):
    runs = _triage(reports, "connection-leak")
    sev = {name: r.severity for name, r in runs.items()}
    # the leak: the database is full, the web app's requests fail, the logs say why
    assert sev["database"] == "critical" and "connections in use" in _titles(runs["database"])
    assert "worker" in _titles(runs["database"])  # who holds them
    assert "out of connection slots" in _titles(runs["logs"]).lower() or \
        "too many" in _titles(runs["logs"]).lower(), _titles(runs["logs"])
    assert sev["health"] == "critical" and "server error" in _titles(runs["health"])
    assert sev["monitoring"] == "critical"
    # what the leak does not touch stays green: one story, not a pile of unrelated alarms
    assert sev["memory"] == sev["tls"] == sev["auth"] == "ok", sev
    step = next_step(list(runs.values()))
    assert "connection pool" in step.text and "Level 2" in step.text, step.text


def test_oom_loop_names_the_leak_and_memory_plan_is_the_next_step(reports):
    runs = _triage(reports, "oom-loop")
    sev = {name: r.severity for name, r in runs.items()}
    assert sev["memory"] == "critical" and "3 OOM kill(s)" in _titles(runs["memory"])
    assert "OOM-killed" in _titles(runs["logs"])
    assert "machine(s) last exited OOM-killed" in _titles(runs["health"])
    # the database, certificates and auth are fine; the machines were restarted, not stopped
    assert sev["database"] == sev["tls"] == sev["auth"] == "ok", sev
    step = next_step(list(runs.values()))
    assert step.run.runbook == "memory" and step.text.startswith("Review memory's plan"), step.text
    assert step.command == "fly scale vm shared-cpu-2x -a demo-app"
    # every runbook saw the same machines: the one OOM-killed machine, by id, everywhere
    killed = "148ed193b95089"
    for name in ("memory", "logs", "not-responding"):
        assert killed in json.dumps(runs[name].findings), name


@pytest.mark.notebook
@pytest.mark.parametrize("scenario, runbook, next_step_text", [
    ("oom-loop", "memory", "next step: Review memory's plan: fly scale vm shared-cpu-2x -a demo-app"),
    ("connection-leak", "not-responding", "next step: Run the database runbook"),
])
def test_make_demo_alert_shows_the_whole_flow_and_sends_nothing_out(reports, scenario, runbook,
                                                                   next_step_text):
    """`make demo-alert`: alert → serve → run → evidence → notification, all on 127.0.0.1 —
    even with real routes configured (a recording server stands in for them here)."""
    with LocalHTTPServer(lambda req: Reply(200, "ok")) as real_slack:
        env = clean_env(OPSLIB_REPORTS=str(reports), SLACK_WEBHOOK_URL=real_slack.url + "/hook",
                        PAGERDUTY_ROUTING_KEY="R" * 32, PAGERDUTY_EVENTS_URL=real_slack.url)
        proc = opslib_cli("demo-alert", "--scenario", scenario, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert real_slack.requests == [], "the demo must not notify the configured routes"
    assert f"HTTP 202, {runbook} queued" in out
    run = only_run(reports)
    assert run.name.endswith(runbook) and f"{runbook:<15} done" in out
    assert f"4. evidence: {run}  (verify: OK" in out and verify_run(run).ok
    assert "2 received" in out and "Slack: *CRITICAL*" in out and "PagerDuty: trigger opslib-" in out
    assert next_step_text in out
    # the same notifications are sealed in the run's evidence, without URLs or keys
    sent = findings(run)["notifications"]
    assert [n["outcome"] for n in sent] == ["delivered", "delivered"]
    assert real_slack.url not in json.dumps(sent)


def test_demo_alert_with_an_unknown_incident_is_a_usage_error(reports):
    proc = opslib_cli("demo-alert", "--scenario", "nope",
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 2 and "no demo incident 'nope'" in proc.stderr
    assert "scenario=connection-leak | oom-loop" in proc.stderr and not reports.exists()
