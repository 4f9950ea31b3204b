"""The health runbook end to end: demo scenarios through papermill, live mode against real
local servers (HTTP on 127.0.0.1, PostgreSQL 15) and the Fly Machines API STAND-IN."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest

from opslib.config import Target
from opslib.thresholds import THRESHOLDS
from opslib.assess import endpoint
from opslib.runbooks import health
from opslib.session import Session
from tests.conftest import clean_env, findings, only_run, opslib_cli, run_dirs
from tests.inprocess import opslib_run
from tests.servers import LocalHTTPServer, Reply, free_port
from tests.standins.fly_machines import FlyMachinesStandIn

TOKEN = "fo1_TestReadOnlyToken_abcdefghijklmnopqrstuvwxyz0123"


def ids(f: dict) -> dict[str, str]:
    return {x["id"]: x["severity"] for x in f["findings"]}


# ----------------------------------------------------------------------------- demo target
@pytest.mark.notebook
def test_demo_healthy_through_make_contract(reports):
    proc = opslib_cli("run", "health", env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stderr
    run = only_run(reports)
    f = findings(run)
    assert (f["status"], f["severity"], f["target"], f["scenario"]) == ("ok", "ok", "demo", "healthy")
    assert ids(f) == {"health-endpoint": "ok", "health-latency": "ok", "machines-ok": "ok",
                      "db-ok": "ok"}
    assert f["escalation"]["level"] == 0
    assert f["version"] == "v42"
    nb = nbformat.read(str(run / "health.ipynb"), as_version=4)
    start_cell = next(c for c in nb.cells if "opslib.start(" in c.source)
    first_output = json.dumps(start_cell.outputs)
    for field in ("App Name", "Version", "Date", "On-Call Contact", "Demo target", "v42"):
        assert field in first_output, field
    assert (run / "charts" / "health-latency.png").read_bytes()[:4] == b"\x89PNG"
    assert "Demo target" in (run / "health.html").read_text()
    for word in ("status: ok", "severity: OK", "escalation: level 0", "evidence: "):
        assert word in proc.stdout


def test_demo_degraded_finds_what_is_wrong(reports):
    proc = opslib_run("run", "health", "--scenario", "degraded", "--fail-on", "critical",
                      env=clean_env(OPSLIB_REPORTS=str(reports), OPS_ON_CALL="ops@example.com"))
    assert proc.returncode == 3, proc.stderr
    f = findings(only_run(reports))
    assert f["status"] == "ok" and f["severity"] == "critical"
    found = ids(f)
    assert found["health-latency"] == "critical"  # p95 above 2000 ms
    assert found["health-5xx"] == "warning"  # 2 of 5
    assert found["health-unreachable"] == "warning"  # 1 timeout of 5
    assert found["checks-critical"] == "critical"
    assert found["machines-down"] == "warning"
    assert found["machines-oom"] == "warning"
    assert found["db-ok"] == "ok"
    assert f["escalation"]["level"] == 1
    assert [a["command"] for a in f["actions"]] == ["fly machine start 3d8d9e1fe67e89 -a demo-app"]
    assert all(a["status"] == "planned" for a in f["actions"])
    nb_text = (only_run(reports) / "health.ipynb").read_text()
    assert "ops@example.com" in nb_text


@pytest.mark.slow
def test_demo_captures_are_up_to_date():
    """The bundled captures are exactly what the generator makes (deterministic)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "opslib.demo.generate", "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.notebook
def test_replay_of_a_demo_run_gives_the_same_findings(reports):
    env = clean_env(OPSLIB_REPORTS=str(reports))
    assert opslib_cli("run", "health", "--scenario", "degraded", "--incident", "a", env=env).returncode == 0
    first = only_run(reports)
    proc = opslib_cli("run", "health", "--target", f"replay:{first}", "--incident", "b", env=env)
    assert proc.returncode == 0, proc.stderr
    second = next(p for p in run_dirs(reports) if p.parent.name == "b")
    assert findings(second)["target"] == "replay"
    assert findings(second)["findings"] == findings(first)["findings"]
    assert findings(second)["actions"] == findings(first)["actions"]


# ----------------------------------------------------------------------------- live, notebook
def _machines(states=("started", "started")) -> list[dict]:
    from opslib.demo.world import machine

    return [machine(f"{i:014x}", name=f"m{i}", region="iad", state=s,
                    checks="passing" if s == "started" else "critical")
            for i, s in enumerate(states, 1)]


def _ok_body() -> dict:
    return {"status": "ok", "timestamp": datetime.now(timezone.utc).isoformat()}


def test_live_healthy_against_real_servers(reports, pg):
    with LocalHTTPServer(lambda r: Reply(200, _ok_body())) as app, \
            FlyMachinesStandIn(TOKEN, {"live-app": _machines()}) as fly:
        env = clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=TOKEN,
                        FLY_FLAPS_BASE_URL=fly.url, DATABASE_URL=pg.dsn())
        proc = opslib_run("run", "health", "--app", "live-app", "--app-url", app.url,
                          "-p", "probes=3", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        run = only_run(reports)
        f = findings(run)
        assert f["target"] == "live" and f["severity"] == "ok", f["findings"]
        # Fly's incidents feed is not reachable from the tests (a closed port): said as info
        assert ids(f) == {"health-endpoint": "ok", "health-latency": "ok", "machines-ok": "ok",
                          "db-ok": "ok", "fly-status-unread": "info"}
        assert [r.path for r in app.requests] == ["/health"] * 3
        assert [r.path for r in fly.requests] == ["/v1/apps/live-app/machines"]
        assert fly.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
        assert fly.mutations == []
        recorded = [json.loads(p.read_text()) for p in sorted((run / "raw" / "http").glob("*.json"))]
        assert len([r for r in recorded if r["source"] != "fly-status"]) == 4
        fly_rec = next(r for r in recorded if r["source"] == "fly-machines")
        assert fly_rec["request"]["headers"]["authorization"] == "[REDACTED]"
        assert (run / "raw" / "pg").is_dir()
        timeline = [json.loads(x) for x in (run / "timeline.jsonl").read_text().splitlines()]
        assert {"app", "fly-machines", "postgres", "runner"} <= {e["source"] for e in timeline}
        for ev in timeline:
            assert {"ts", "source", "operation", "target", "outcome"} <= ev.keys()
    # Replay without any server or secret: same findings.
    proc = opslib_run("run", "health", "--target", f"replay:{run}", "--incident", "replayed",
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stderr
    replayed = next(p for p in run_dirs(reports) if p.parent.name == "replayed")
    assert findings(replayed)["findings"] == f["findings"]


def test_live_failures_become_findings(reports, pg):
    with LocalHTTPServer(lambda r: Reply(503, "")) as app, \
            FlyMachinesStandIn("fo1_SomeOtherToken_abcdefghijklmnopqrstuvwxyz01234", {"live-app": []}) as fly:
        env = clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=TOKEN,
                        FLY_FLAPS_BASE_URL=fly.url,
                        DATABASE_URL=f"postgresql://postgres:x@127.0.0.1:{free_port()}/postgres")
        proc = opslib_run("run", "health", "--app", "live-app", "--app-url", app.url,
                          "-p", "probes=2", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        f = findings(only_run(reports))
        found = ids(f)
        assert found["health-5xx"] == "critical"
        assert found["machines-error"] == "unknown"
        assert found["db-unreachable"] == "critical"
        detail = {x["id"]: x for x in f["findings"]}
        assert "401" in detail["machines-error"]["title"]
        assert "You must be authenticated" in detail["machines-error"]["title"]
        assert "refused" in detail["db-unreachable"]["title"]
        assert f["escalation"]["level"] == 2  # database problems → Platform Team
        assert fly.mutations == []


def test_live_without_configuration_skips_visibly(reports):
    with LocalHTTPServer(lambda r: Reply(200, _ok_body())) as app:
        proc = opslib_run("run", "health", "--app-url", app.url, "-p", "probes=1",
                          env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stderr
    run = only_run(reports)
    f = findings(run)
    skipped = {x["title"]: x for x in f["findings"] if x["severity"] == "info"}
    assert "skipped: Fly Machines API not configured" in skipped
    assert "skipped: Postgres not configured" in skipped
    assert "FLY_API_TOKEN" in skipped["skipped: Fly Machines API not configured"]["detail"]
    assert "skipped: Fly Machines API not configured" in (run / "health.html").read_text()
    # the endpoint answered, but machines and database were not checked: blind is not green
    assert f["severity"] == "unknown"
    assert f["escalation"]["level"] == 1 and "confirm by hand" in f["escalation"]["reason"]
    cov = f["coverage"]
    assert cov["measured"] == ["probes"] and set(cov["blind"]) == {"machines", "database"}
    assert cov["complete"] is False
    unknown = next(x for x in f["findings"] if x["id"] == "coverage")
    assert "Fly Machines API (skipped)" in unknown["title"] and "Postgres (skipped)" in unknown["title"]


# ----------------------------------------------------------------------------- live, probes
def _collect(url: str, **kw) -> list[dict]:
    session = Session("live")
    target = Target("live", "x", url, environ={})
    data = health.collect(session, target, probes=kw.get("probes", 2), timeout=kw.get("timeout", 1.0))
    df = endpoint.probes_frame(data.probes, datetime.now(timezone.utc))
    return [f.__dict__ for f in endpoint.assess_probes(df, dict(THRESHOLDS), url)]


@pytest.mark.parametrize("reply, expect_id, expect_sev, expect_text", [
    (Reply(503, ""), "health-5xx", "critical", "503"),
    (Reply(502, "Bad Gateway"), "health-5xx", "critical", "502"),
    (Reply(200, "<html>maintenance</html>"), "health-invalid-body", "warning", "not JSON"),
    (Reply(200, {"status": "degraded", "timestamp": "2026-01-01T00:00:00Z"}),
     "health-invalid-body", "warning", "'degraded'"),
    (Reply(200, {"status": "ok"}), "health-invalid-body", "warning", "timestamp missing"),
    (Reply(200, {"status": "ok", "timestamp": "2001-01-01T00:00:00Z"}), "health-clock-skew",
     "warning", "clock differs"),
    (Reply(200, _ok_body(), delay=3), "health-unreachable", "critical", "timeout"),
])
def test_probe_outcomes_against_a_real_server(reply, expect_id, expect_sev, expect_text):
    with LocalHTTPServer(lambda r: reply) as app:
        found = {f["id"]: f for f in _collect(app.url + "/")}
    assert expect_id in found, found
    assert found[expect_id]["severity"] == expect_sev
    assert expect_text in found[expect_id]["title"] + found[expect_id]["detail"]


def test_probe_closed_port_is_refused_not_a_traceback():
    port = free_port()  # nothing listens there
    found = {f["id"]: f for f in _collect(f"http://127.0.0.1:{port}")}
    assert found["health-unreachable"]["severity"] == "critical"
    assert "refused" in found["health-unreachable"]["detail"]


def test_probe_dns_failure_is_classified():
    found = {f["id"]: f for f in _collect("http://no-such-host.invalid")}
    assert "dns" in found["health-unreachable"]["detail"]


def test_slow_probe_is_judged_by_thresholds():
    with LocalHTTPServer(lambda r: Reply(200, _ok_body(), delay=0.6)) as app:
        found = {f["id"]: f for f in _collect(app.url, timeout=3.0)}
    assert found["health-latency"]["severity"] == "warning"


# ----------------------------------------------------------------------------- gated remediation
@pytest.mark.notebook
def test_remediation_is_gated_by_the_plan_digest(reports):
    """Against the Fly Machines API STAND-IN: zero mutating requests without a matching
    confirmation, exactly the planned ones with it, and a stale plan refused."""
    machines = _machines(("started", "stopped"))
    stopped = machines[1]["id"]
    with LocalHTTPServer(lambda r: Reply(200, _ok_body())) as app, \
            FlyMachinesStandIn(TOKEN, {"live-app": machines}) as fly:
        env = clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=TOKEN, FLY_FLAPS_BASE_URL=fly.url)
        base = ("run", "health", "--app", "live-app", "--app-url", app.url, "-p", "probes=1")

        def latest() -> dict:
            return findings(max(run_dirs(reports), key=lambda p: p.stat().st_mtime_ns))

        assert opslib_cli(*base, "--incident", "p1", env=env).returncode == 0
        plan = latest()
        digest = plan["plan_digest"]
        assert len(digest) == 16
        assert [(a["kind"], a["status"]) for a in plan["actions"]] == [("machine.start", "planned")]
        assert plan["actions"][0]["command"] == f"fly machine start {stopped} -a live-app"
        assert fly.mutations == []

        proc = opslib_cli(*base, "--apply", env=env)
        assert proc.returncode == 2 and "--apply needs --confirm" in proc.stderr

        proc = opslib_cli(*base, "--incident", "p2", "--apply", "--confirm", "0" * 16, env=env)
        assert proc.returncode == 1, proc.stdout
        refused = latest()
        assert refused["apply"]["outcome"] == "refused"
        assert [a["status"] for a in refused["actions"]] == ["refused"]
        assert "apply refused: confirmation '0000000000000000' does not match the current " \
               f"plan {digest}" in proc.stdout
        assert fly.mutations == []

        proc = opslib_cli(*base, "--incident", "p3", "--apply", "--confirm", digest, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        applied = latest()
        assert applied["apply"]["outcome"] == "applied"
        assert [a["status"] for a in applied["actions"]] == ["applied"]
        assert [(r.method, r.path) for r in fly.mutations] == [
            ("POST", f"/v1/apps/live-app/machines/{stopped}/start")]
        run = max(run_dirs(reports), key=lambda p: p.stat().st_mtime_ns)
        timeline = (run / "timeline.jsonl").read_text()
        assert "applied machine.start" in timeline and "start_machine" in timeline

        # The same confirmation again: the machine is started now, so the plan is stale.
        proc = opslib_cli(*base, "--incident", "p4", "--apply", "--confirm", digest, env=env)
        assert proc.returncode == 1
        assert latest()["apply"]["outcome"] == "refused"
        assert f"apply refused: nothing to apply: the target no longer needs plan '{digest}'" \
            in proc.stdout, proc.stdout
        assert len(fly.mutations) == 1


def test_apply_is_refused_on_the_demo_target(reports):
    proc = opslib_run("run", "health", "--apply", "--confirm", "abc",
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 2 and "live target only" in proc.stderr
    assert not reports.exists()


def test_run_all_in_jupyterlab_works_with_the_stored_defaults(tmp_path):
    """What `make lab` → Run All does: execute the stored notebook as is, in notebooks/,
    with the opslib kernel and no runner around it."""
    import os
    import sys

    from nbclient import NotebookClient

    from tests.conftest import REPO

    nb = nbformat.read(str(REPO / "notebooks" / "health.ipynb"), as_version=4)
    kernel = Path(sys.prefix, "share", "jupyter", "kernels", "opslib", "kernel.json")
    assert kernel.is_file(), "make setup registers the opslib kernel inside the venv"
    env_before = dict(os.environ)
    os.environ.pop("OPSLIB_RUN_DIR", None)
    os.environ["TMPDIR"] = str(tmp_path)
    try:
        NotebookClient(nb, kernel_name="opslib", timeout=120,
                       resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "Interactive run" in text and "Demo target" in text
    assert "Result: **OK**" in text
    scratch = list(tmp_path.glob("opslib-health-*"))
    assert len(scratch) == 1 and (scratch[0] / "findings.json").exists()
