"""Verdicts you can trust: blind is never green, and stepping through in JupyterLab is
idempotent.

Runs use the real command line and runner (notebooks executed in process, see
tests/inprocess.py); the JupyterLab tests drive a runbook's notebook cell by cell through an
IPython shell, as an engineer does.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from opslib import catalog
from tests.conftest import clean_env, findings, only_run
from tests.inprocess import opslib_run


def _run(reports: Path, *args: str) -> tuple[int, dict, str]:
    proc = opslib_run("run", *args, env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr
    return proc.returncode, findings(only_run(reports)), proc.stdout


# ----------------------------------------------------------------------------- fail closed
def test_monitoring_with_nothing_configured_is_unknown_not_ok(reports):
    code, f, out = _run(reports, "monitoring", "--app", "x")
    assert code == 0  # fail_on defaults to never
    assert f["severity"] == "unknown"
    assert f["escalation"]["level"] == 1
    assert f["escalation"]["reason"].startswith("confirm by hand — not checked: Prometheus")
    assert not any(x["severity"] == "ok" for x in f["findings"]), f["findings"]
    cov = f["coverage"]
    assert cov["complete"] is False and cov["measured"] == []
    assert {"p95_latency_ms", "error_rate_pct", "memory_pct", "cpu_pct",
            "connections"} <= set(cov["blind"])
    # context (the concurrency chart, the recent logs) is not what the verdict rests on
    assert "concurrency" not in cov["blind"]
    assert {c["key"]: c["basis"] for c in cov["checks"]}["concurrency"] == "context"
    assert "severity: UNKNOWN" in out and "UNKNOWN   not checked: Prometheus" in out


def test_the_daily_backups_check_fails_closed_unless_told_otherwise(reports):
    code, f, _ = _run(reports / "a", "backups", "--app", "x", "--fail-on", "critical")
    assert (code, f["severity"], f["exit_code"]) == (3, "unknown", 3)
    assert set(f["coverage"]["skipped"]) == {"backups", "archiver"}
    code, f, _ = _run(reports / "b", "backups", "--app", "x", "--fail-on", "critical",
                      "--allow-unknown")
    assert (code, f["severity"]) == (0, "unknown")


def test_a_fully_measured_demo_run_is_complete_and_ok(reports):
    code, f, _ = _run(reports, "health")
    assert (code, f["severity"]) == (0, "ok")
    assert f["coverage"]["complete"] is True and f["coverage"]["blind"] == []
    assert set(f["coverage"]["measured"]) == {"probes", "machines", "database", "fly-status"}


# ----------------------------------------------------------------------------- JupyterLab
class Lab:
    """A runbook's notebook stepped through cell by cell in one IPython shell."""

    def __init__(self, runbook: str, env: dict[str, str]) -> None:
        nb = json.loads(catalog.get_runbook(runbook).path.read_text(encoding="utf-8"))
        self.cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
        self.shell = InteractiveShell.instance()
        self.env = env

    def run(self, index: int, source: str | None = None) -> str:
        out = io.StringIO()
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                self.shell.run_cell(self.cells[index] if source is None else source,
                                    store_history=True)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return out.getvalue()

    @property
    def ns(self) -> dict:
        return self.shell.user_ns

    def close(self) -> None:
        InteractiveShell.clear_instance()


@pytest.fixture
def lab():
    env = clean_env(MPLBACKEND="Agg")
    env.pop("OPSLIB_RUN_DIR", None)
    labs = []

    def open_lab(runbook: str) -> Lab:
        labs.append(Lab(runbook, env))
        return labs[-1]

    yield open_lab
    for x in labs:
        x.close()


def test_rerunning_cells_on_the_demo_target_never_counts_a_finding_twice(lab):
    nb = lab("health")
    for i in range(len(nb.cells)):
        nb.run(i)
    first = nb.ns["result"]
    ids = [f["id"] for f in first["findings"]]
    assert first["severity"] == "ok" and ids and len(ids) == len(set(ids))
    # re-run Collect (the demo capture answers again) and every cell after it, twice
    collect = next(i for i, c in enumerate(nb.cells) if ".collect(" in c)
    for _ in range(2):
        outputs = [nb.run(i) for i in range(collect, len(nb.cells))]
        assert not any("Error" in o for o in outputs), outputs
    again = nb.ns["result"]
    assert sorted(f["id"] for f in again["findings"]) == sorted(ids)
    assert again["severity"] == "ok" and again["coverage"] == first["coverage"]


def test_a_skipped_cell_is_named_in_one_line(lab):
    nb = lab("health")
    nb.run(0)
    nb.run(1)
    collect = next(i for i, c in enumerate(nb.cells) if ".collect(" in c)
    out = nb.run(collect + 1)  # the cell after Collect, without Collect
    assert "NameError" in out
    hint = [line for line in out.splitlines() if line.startswith("→")]
    assert len(hint) == 1 and "`data` is set by cell" in hint[0] and "run that cell first" in hint[0]


def test_parameters_edited_after_the_start_cell_are_taken_up_or_refused(lab):
    nb = lab("health")
    nb.run(0)
    nb.run(1)
    run = nb.ns["run"]
    nb.run(0, 'thresholds = {"response_time_ms": [100, 150]}')
    assert run.thresholds["response_time_ms"] == (100.0, 150.0)
    nb.run(0, 'app = "another-app"')
    with pytest.raises(Exception, match="app changed since the start cell"):
        run.thresholds


def test_a_skipped_plan_cell_is_unknown_not_silently_dropped(lab):
    nb = lab("health")
    for i in range(len(nb.cells) - 1):
        nb.run(i)
    assert "run.plan(" in nb.cells[-1]
    result = nb.ns["run"].finish()  # the engineer ends the run without the Plan cell
    ids = {f["id"]: f for f in result["findings"]}
    assert ids["plan-not-run"]["severity"] == "unknown"
    assert result["severity"] == "unknown" and result["escalation"]["level"] == 1


# ----------------------------------------------------------------------------- time of measurement
def test_clock_skew_is_judged_at_each_probe_not_at_the_start_of_the_run(tmp_path):
    """An engineer steps slowly through health.ipynb, or a rollback's verification probes a
    minute after the run began: the app's clock is right, and no skew may be reported. The
    app answers after a real delay (latency) with its own correct clock."""
    import time
    from datetime import datetime, timedelta, timezone

    from opslib.assess import endpoint
    from opslib.config import Target
    from opslib.runbooks import health
    from opslib.session import Session
    from opslib.thresholds import THRESHOLDS
    from tests.servers import LocalHTTPServer, Reply

    def app(_request):
        time.sleep(0.2)  # latency, like a real app over the network
        return Reply(200, {"status": "ok", "timestamp": datetime.now(timezone.utc).isoformat()})

    started = datetime.now(timezone.utc) - timedelta(seconds=45)  # the run began 45 s ago
    with LocalHTTPServer(app) as server:
        session = Session("record", raw_dir=tmp_path / "raw", now=started)
        data = health.collect(session, Target("live", "x", server.url, environ={}), probes=2,
                              timeout=5.0)
        df = endpoint.probes_frame(data.probes, session.now())
        session.close()
    assert df["skew_s"].abs().max() < 2, df
    ids = {f.id for f in endpoint.assess_probes(df, dict(THRESHOLDS), server.url + "/health")}
    assert "health-clock-skew" not in ids
    # the replay of that capture judges the same way, from the recorded times
    replay = Session("replay", capture_dir=tmp_path / "raw")
    again = health.collect(replay, Target("replay", "x", server.url, environ={}), probes=2)
    assert endpoint.probes_frame(again.probes, replay.now())["skew_s"].tolist() == \
        df["skew_s"].tolist()


# ----------------------------------------------------------------------------- auto-stop
def _auto_stopped(mid: str, *, autostop: str = "stop") -> dict:
    """A machine Fly's proxy stopped while idle: a service with autostop/autostart, and a
    requested, clean exit (exit code 0, not OOM) — the event flyd records for a stop."""
    from datetime import datetime, timedelta, timezone

    from opslib.demo.world import exit_events, machine

    m = machine(mid, name=f"idle-{mid[:4]}", region="ams", state="stopped", checks="critical",
                events=exit_events(at=datetime.now(timezone.utc) - timedelta(minutes=9),
                                   code=0, oom=False, restarts=0, requested=True))
    m["config"]["services"] = [{"protocol": "tcp", "internal_port": 8080,
                                "autostop": autostop, "autostart": True, "min_machines_running": 0,
                                "ports": [{"port": 443, "handlers": ["tls", "http"]}]}]
    return m


def test_an_auto_stopped_machine_is_info_and_never_started(reports, pg):
    from datetime import datetime, timezone

    from opslib.demo.world import machine
    from tests.servers import LocalHTTPServer, Reply
    from tests.standins.fly_machines import FlyMachinesStandIn

    token = "fo1_TestReadOnlyToken_abcdefghijklmnopqrstuvwxyz0123"
    machines = [machine("148ed193b95089", name="busy", region="iad"),
                _auto_stopped("3d8d9e1fe67e89")]

    def ok(_request):
        return Reply(200, {"status": "ok", "timestamp": datetime.now(timezone.utc).isoformat()})

    with LocalHTTPServer(ok) as app, FlyMachinesStandIn(token, {"live-app": machines}) as fly:
        env = clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=token,
                        FLY_FLAPS_BASE_URL=fly.url, DATABASE_URL=pg.dsn())
        proc = opslib_run("run", "health", "--app", "live-app", "--app-url", app.url,
                          "-p", "probes=2", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        f = findings(only_run(reports))
        assert fly.mutations == []
    by = {x["id"]: x for x in f["findings"]}
    assert by["machines-auto-stopped"]["severity"] == "info"
    assert "will start on the next request" in by["machines-auto-stopped"]["title"]
    assert "machines-down" not in by and f["severity"] == "ok", f["findings"]
    assert f["actions"] == []  # no `fly machine start` for a machine the proxy starts itself



# ----------------------------------------------------------------------------- live calls
def test_an_update_keeps_a_stopped_machine_stopped_under_a_lease():
    """flaps boots a stopped machine on a config update unless ``skip_launch`` (the stand-in
    does the same); a rollback or resize must not start what was stopped, as `fly deploy`
    does not, and changes a machine only under its lease, as flyctl does."""
    import json

    from opslib.actions import ApplyContext, machine_action
    from opslib.config import Target
    from opslib.demo.world import machine
    from opslib.executors import EXECUTORS
    from opslib.session import Session
    from tests.standins.fly_machines import FlyMachinesStandIn, leased_update

    token = "fo1_TestReadOnlyToken_abcdefghijklmnopqrstuvwxyz0123"
    stopped = machine("3d8d9e1fe67e89", name="idle", region="ams", state="stopped")
    with FlyMachinesStandIn(token, {"live-app": [stopped]}) as fly:
        target = Target("live", "live-app", "", environ={"FLY_API_TOKEN": token,
                                                         "FLY_FLAPS_BASE_URL": fly.url})
        action = machine_action("machine.update", "live-app", stopped["id"], title="t",
                                basis={}, reason="r", config_patch={"image": "reg/app:old"})
        with Session("live") as session:
            result = EXECUTORS["machine.update"](ApplyContext(session, target), action)
        assert [(r.method, r.path) for r in fly.mutations] == leased_update("live-app",
                                                                            stopped["id"])
        body = json.loads(fly.updates[0].body)
        assert body["skip_launch"] is True and body["config"]["image"] == "reg/app:old"
        nonce = fly.updates[0].headers["fly-machine-lease-nonce"]
        assert nonce and fly.mutations[2].headers["fly-machine-lease-nonce"] == nonce
        assert stopped["state"] == "stopped" and result["kept_stopped"] is True
        assert fly.leases == {}  # released


def test_health_names_every_problem_of_the_certificate_expiry_first():
    """A real TLS server with an expired, self-signed certificate: the client's TLS error
    says only "self-signed"; the finding names both, expiry first."""
    from opslib.config import Target
    from opslib.runbooks import health
    from opslib.session import Session
    from tests.tls_servers import LocalTLSServer, self_signed

    with LocalTLSServer(*self_signed("127.0.0.1", days_left=-3)) as server:
        url = f"https://127.0.0.1:{server.port}"
        with Session("live") as session:
            data = health.collect(session, Target("live", "x", url, environ={}), probes=1,
                                  timeout=3.0)
    assert data.probes[0].error == "tls"
    assert data.readings["certificate"].context  # context: the probes carry the verdict
    f, = health.assess_certificate(data.readings)
    assert f.severity == "critical"
    problems = f.title.split(": the certificate is ", 1)[1].split("; ")
    assert problems[0].startswith("expired 3 day(s) ago")
    assert any(p.startswith("self-signed") for p in problems)


def test_tls_probes_the_port_of_the_app_url():
    from opslib.config import Target
    from opslib.runbooks import tls
    from opslib.session import Session
    from tests.tls_servers import LocalTLSServer, self_signed

    with LocalTLSServer(*self_signed("127.0.0.1")) as server:
        with Session("live") as session:
            data = tls.collect(session, Target("live", "x", f"https://127.0.0.1:{server.port}",
                                               environ={}), timeout=3.0)
    served = data.readings.value("served:127.0.0.1")
    assert served is not None and served.error is None and served.port == server.port


def test_fly_platform_issues_come_from_the_incidents_feed_for_the_apps_regions():
    """A stand-in of Fly's incidents feed (the shape flyctl reads from incidents.flyio.net):
    an incident in one of the app's regions, or platform-wide, is a Level 2 warning; one in
    another region is not."""
    from opslib.assess import platform
    from opslib.config import Target
    from opslib.reads import gather
    from opslib.session import Session
    from tests.servers import LocalHTTPServer, Reply

    def feed(*incidents):
        body = {"incidents": [
            {"id": f"i{n}", "name": name, "status": "investigating", "impact": "major",
             "created_at": "2026-12-03T22:00:00Z", "started_at": "2026-12-03T22:00:00Z",
             "resolved_at": None, "updated_at": "2026-12-03T22:10:00Z",
             "components": [{"id": "c", "name": comp}]}
            for n, (name, comp) in enumerate(incidents)]}
        return lambda _request: Reply(200, body)

    def judge(server, regions):
        target = Target("live", "x", "", environ={"FLY_INCIDENTS_URL": server.url + "/v1/incidents"})
        with Session("live") as session:
            readings = gather(session, target, [platform.read(session, target)])
        return platform.findings(readings["fly-status"], regions)

    with LocalHTTPServer(feed(("Elevated errors in IAD", "Ashburn, Virginia (US)"))) as server:
        f, = judge(server, ["iad", "ams"])
        assert (f.id, f.severity, f.escalate) == ("fly-platform-incident", "warning", 2)
        assert "iad" in f.title and "Elevated errors in IAD" in f.evidence[0]
        assert judge(server, ["syd"]) == []
    with LocalHTTPServer(feed(("Degraded API performance", "Machines API"))) as server:
        f, = judge(server, ["syd"])
        assert f.severity == "warning" and "the platform" in f.title
    with LocalHTTPServer(lambda _r: Reply(503, "")) as server:
        f, = judge(server, ["iad"])
        assert f.severity == "info" and f.id == "fly-status-unread"


def test_a_live_diagnosis_stepped_through_in_jupyterlab_packs_verifiable_evidence(tmp_path):
    """The last cell of an interactive live session packs what `make run` packs, with the
    notebook as the engineer saved it (Jupyter names it; OPSLIB_NOTEBOOK here)."""
    import json as _json
    from datetime import datetime, timezone

    from opslib.evidence import verify_run
    from tests.conftest import run_dirs
    from tests.servers import LocalHTTPServer, Reply

    reports = tmp_path / "reports"
    saved = tmp_path / "my-health.ipynb"
    nb = _json.loads(catalog.get_runbook("health").path.read_text(encoding="utf-8"))
    nb["cells"].append({"cell_type": "markdown", "metadata": {}, "id": "engineer-note",
                        "source": ["engineer's note: checked at 03:12"]})
    saved.write_text(_json.dumps(nb), encoding="utf-8")
    env = clean_env(MPLBACKEND="Agg", OPSLIB_REPORTS=str(reports), OPSLIB_NOTEBOOK=str(saved))
    env.pop("OPSLIB_RUN_DIR", None)

    def ok(_request):
        return Reply(200, {"status": "ok", "timestamp": datetime.now(timezone.utc).isoformat()})

    with LocalHTTPServer(ok) as app:
        lab = Lab("health", env)
        try:
            lab.run(0)
            lab.run(0, f'app_url = "{app.url}"\nprobes = 2\nincident = "inc-lab"')
            outputs = [lab.run(i) for i in range(1, len(lab.cells))]
        finally:
            lab.close()
    assert not any("Error" in o for o in outputs), outputs
    run, = run_dirs(reports)
    assert run.parent.name == "inc-lab" and run.name.endswith("-health")
    assert verify_run(run).ok
    f = findings(run)
    assert f["interactive"] is True and f["target"] == "live" and f["status"] == "ok"
    assert "engineer's note" in (run / "health.ipynb").read_text()
    assert (run / "health.html").exists() and list((run / "raw").rglob("*.json"))
    assert "as saved at" in (run / "run.log").read_text()


def test_a_rollback_verified_a_minute_after_the_run_began_is_not_a_clock_skew():
    """The verification probes answer with the app's correct clock 60 s after the run's start
    (a rollback takes time): judged at their own time, the rollback is verified."""
    from datetime import datetime, timedelta, timezone

    from opslib.demo.world import machine
    from opslib.reads import Readings
    from opslib.runbooks import rollback
    from opslib.sources.fly_models import parse_machines
    from opslib.sources.http import ProbeResult
    from opslib.thresholds import thresholds

    started = datetime.now(timezone.utc) - timedelta(seconds=60)
    image = "registry.fly.io/app:v41"
    probes = []
    for i in range(3):
        at = started + timedelta(seconds=50 + i)
        body = '{"status": "ok", "timestamp": "%s"}' % at.isoformat()
        probes.append(ProbeResult("https://x/health", 200, 120.0, body=body, sent_at=at,
                                  received_at=at + timedelta(milliseconds=120)))
    after = parse_machines([machine("148ed193b95089", name="a", region="iad", image=image)])
    v = rollback.Verification(Readings.of({"machines-after": after, "probes-after": probes}))
    decision = rollback.Decision(current={"version": 42}, target={"version": 41,
                                                                   "image_ref": image},
                                 needed=True)
    found = rollback.assess_verification(v, decision, "x", started, thresholds(),
                                         "https://x/health")
    assert [f.id for f in found] == ["rollback-verified"], [f.title for f in found]


def test_unknown_is_listed_with_the_criticals_in_the_review_and_shown_as_strongly():
    from opslib.review.html import SEV_COLOURS
    from opslib.review.scan import RunSummary, badness

    def run(name, severity):
        return RunSummary(f"inc/{name}", "inc", name, status="ok", severity=severity)

    order = sorted([run("a", "ok"), run("b", "warning"), run("c", "unknown"),
                    run("d", "critical")], key=badness, reverse=True)
    assert {r.name for r in order[:2]} == {"c", "d"}  # blind sorts with critical
    assert SEV_COLOURS["unknown"] not in (SEV_COLOURS["ok"], "#616161")  # not a quiet grey
