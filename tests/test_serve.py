"""The Alertmanager webhook receiver, driven over real HTTP on 127.0.0.1 as Alertmanager
drives it (payload version 4). Runbooks run through the real runner, with the notebook
executed in process (tests/inprocess.py)."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import httpx
import pytest

from opslib import runner
from opslib.evidence import verify_run
from opslib.serve import MAX_BODY, Receiver, incident_for, make_server, run_job
from tests.inprocess import run_notebook

TOKEN = "webhook-canary-token-0123456789"


def _in_process(job):
    token = runner.notebook_executor.set(run_notebook)
    try:
        return run_job(job)
    finally:
        runner.notebook_executor.reset(token)


class Serving:
    def __init__(self, reports: Path, **kw) -> None:
        self.receiver = Receiver(reports, token=TOKEN, run=kw.pop("run", _in_process), **kw)
        self.server = make_server(self.receiver, "127.0.0.1:0")
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def post(self, payload, token: str | None = TOKEN, raw: bytes | None = None):
        headers = {"authorization": f"Bearer {token}"} if token else {}
        body = raw if raw is not None else json.dumps(payload).encode()
        return httpx.post(self.url + "/alertmanager", content=body, headers=headers, timeout=10)

    def runs(self) -> list[dict]:
        return httpx.get(self.url + "/runs", timeout=10).json()["runs"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.receiver.stop()


@pytest.fixture
def env(reports, monkeypatch):
    from tests.conftest import clean_env

    for k, v in clean_env(OPSLIB_REPORTS=str(reports)).items():
        monkeypatch.setenv(k, v)
    for k in ("FLY_API_TOKEN", "DATABASE_URL"):
        monkeypatch.delenv(k, raising=False)
    return reports


def payload(*alerts, group="{}:{alertname=\"OpslibMemoryUsageWarning\"}", status="firing"):
    return {"version": "4", "groupKey": group, "status": status, "receiver": "opslib",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0,
            "alerts": list(alerts)}


def alert(runbook="health", app="demo-app", status="firing", **labels):
    return {"status": status, "labels": {"alertname": "OpslibMemoryUsageWarning", "app": app,
                                         "severity": "warning", **labels},
            "annotations": {"runbook": runbook}, "startsAt": "2026-12-04T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph",
            "fingerprint": "abc"}


@pytest.mark.parametrize("case, status, message", [
    ("no token", 401, "bearer token"),
    ("wrong token", 401, "bearer token"),
    ("too big", 413, "the limit is"),
    ("not json", 400, "not JSON"),
    ("version 3", 400, "webhook version 4"),
    ("unknown runbook", 400, "names runbook 'reboot-everything'"),
    ("bad app", 400, "not a valid Fly app name"),
])
def test_bad_requests_name_the_problem_and_run_nothing(env, case, status, message):
    s = Serving(env, workers=1)
    try:
        if case == "no token":
            r = s.post(payload(alert()), token=None)
        elif case == "wrong token":
            r = s.post(payload(alert()), token="nope")
        elif case == "too big":
            r = s.post(None, raw=b"{" + b" " * (MAX_BODY + 1) + b"}")
        elif case == "not json":
            r = s.post(None, raw=b"{nope")
        elif case == "version 3":
            r = s.post({**payload(alert()), "version": "3"})
        elif case == "unknown runbook":
            r = s.post(payload(alert(), alert(runbook="reboot-everything")))
        else:
            r = s.post(payload(alert(app="Bad App")))
        assert r.status_code == status and message in r.json()["error"], r.text
        assert s.runs() == []
    finally:
        s.close()
    assert not (env / incident_for("{}:{alertname=\"OpslibMemoryUsageWarning\"}")).exists()


def test_an_alert_runs_its_runbook_once_per_group_and_resolved_is_recorded(env):
    s = Serving(env, workers=1)
    try:
        firing = alert(app_url="http://127.0.0.1:9")  # nothing listens: the run says so
        r = s.post(payload(firing))
        assert r.status_code == 202 and r.json()["accepted"][0]["status"] == "queued"
        again = s.post(payload(firing))  # Alertmanager re-sends the group: not run twice
        assert again.json()["accepted"][0]["status"] == "deduplicated"
        # the group's warning and critical alerts in one post name the same runbook: once
        critical = {**firing, "labels": {**firing["labels"], "severity": "critical",
                                          "alertname": "OpslibMemoryUsageCritical"}}
        both = s.post(payload(firing, critical, group='{}:{app="demo-app"}'))
        assert [a["status"] for a in both.json()["accepted"]] == ["queued", "deduplicated"]
        assert s.receiver.wait_idle(60)
        done = s.post(payload(alert(status="resolved"), status="resolved"))
        assert done.json()["accepted"][0]["status"] == "resolved"
        runs = s.runs()
        assert [r["status"] for r in runs] == ["done", "deduplicated", "done", "deduplicated",
                                               "resolved"]
        evidence = Path(runs[0]["evidence"])
        assert evidence.parent.name == incident_for(payload()["groupKey"])
        assert verify_run(evidence).ok
        assert json.loads((evidence / "parameters.json").read_text())["parameters"].get(
            "apply") in (None, False)
        health = httpx.get(s.url + "/healthz", timeout=10).json()
        assert health == {"ok": True, "queued": 0, "running": 0}
    finally:
        s.close()


def test_a_full_queue_is_503_and_a_restart_runs_what_was_accepted_exactly_once(env):
    ran = []

    def record(job):
        ran.append(job.id)
        return {"evidence": "", "severity": "ok"}

    s = Serving(env, workers=0, max_queue=2, run=record)  # nothing is taken off the queue
    try:
        assert s.post(payload(alert(), group="g1")).status_code == 202
        assert s.post(payload(alert(), group="g2")).status_code == 202
        full = s.post(payload(alert(), group="g3"))
        assert full.status_code == 503 and "queue is full" in full.json()["error"]
        ids = [r["id"] for r in s.runs()]
    finally:
        s.close()
    # a job that was running when the receiver stopped is not run again
    state = json.loads((env / "_serve" / "state.json").read_text())
    state["jobs"][0]["status"] = "running"
    (env / "_serve" / "state.json").write_text(json.dumps(state))
    s = Serving(env, workers=1, run=record)
    try:
        assert s.receiver.wait_idle(30)
        statuses = {r["id"]: r["status"] for r in s.runs()}
    finally:
        s.close()
    assert ran == [ids[1]] and statuses == {ids[0]: "interrupted", ids[1]: "done"}


@pytest.mark.notebook
def test_serve_stopped_mid_run_and_restarted_runs_nothing_twice_and_leaves_nothing_running(tmp_path):
    """The real `python -m opslib serve` process, stopped (SIGTERM, as systemd or a deploy
    does) while a run is in progress and another waits, then started again."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from tests.conftest import REPO, clean_env
    from tests.servers import LocalHTTPServer, Reply, free_port

    reports = tmp_path / "reports"
    port = free_port()
    env = clean_env(OPSLIB_REPORTS=str(reports), OPSLIB_WEBHOOK_TOKEN=TOKEN)
    url = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen:
        with (tmp_path / "serve.log").open("a") as log:
            proc = subprocess.Popen([sys.executable, "-m", "opslib", "serve", "--listen",
                                     f"127.0.0.1:{port}", "--workers", "1"], env=env, cwd=REPO,
                                    stdout=log, stderr=log)
        for _ in range(150):
            try:
                httpx.get(url + "/healthz", timeout=1)
                return proc
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError((tmp_path / "serve.log").read_text())

    def runs() -> dict[str, dict]:
        return {r["incident"]: r for r in httpx.get(url + "/runs", timeout=5).json()["runs"]}

    def post(group: str, app_url: str):
        r = httpx.post(url + "/alertmanager", json=payload(alert(app_url=app_url), group=group),
                       headers={"authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert r.status_code == 202, r.text

    slow = LocalHTTPServer(lambda req: Reply(200, {"status": "ok"}, delay=3.0))
    with slow:
        serve = start()
        try:
            post("slow", slow.url)  # five probes of 3 s each: still running when stopped
            post("next", "http://127.0.0.1:9")  # waits behind it
            deadline = time.monotonic() + 60
            while runs()[incident_for("slow")]["status"] != "running":
                assert time.monotonic() < deadline, runs()
                time.sleep(0.2)
            time.sleep(1.0)  # the run's kernel is up and probing
            children = psutil.Process(serve.pid).children(recursive=True)
            assert children, "a run executes in child processes (papermill, the kernel)"
            serve.send_signal(signal.SIGTERM)
            assert serve.wait(timeout=60) == 0
        finally:
            if serve.poll() is None:
                serve.kill()
        # nothing of the run is left running
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], alive
        serve = start()
        try:
            deadline = time.monotonic() + 120
            while runs()[incident_for("next")]["status"] in ("queued", "running"):
                assert time.monotonic() < deadline, runs()
                time.sleep(0.3)
            final = runs()
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=60)
    assert final[incident_for("slow")]["status"] == "interrupted"
    assert final[incident_for("next")]["status"] == "done"
    # the interrupted alert was not run again: its only requests are from before the stop
    assert len(slow.requests) <= 5
    assert len(final) == 2


def test_a_runbook_map_sends_one_alert_to_several_runbooks_and_bad_maps_are_refused(env, tmp_path):
    from opslib.errors import UsageError
    from opslib.serve import load_runbook_map
    from tests.conftest import clean_env, opslib_cli

    good = tmp_path / "map.yml"
    good.write_text("OpslibErrorRateCritical: [not-responding, database]\nOpslibCpuUsageWarning: monitoring\n")
    mapping = load_runbook_map(good)
    assert mapping == {"OpslibErrorRateCritical": ["not-responding", "database"],
                       "OpslibCpuUsageWarning": ["monitoring"]}
    ran = []
    s = Serving(env, workers=0, runbook_map=mapping, run=lambda job: ran.append(job) or {})
    try:
        r = s.post(payload(alert(runbook="health", alertname="OpslibErrorRateCritical",
                                 instance="148ed193b95089"), group="{}:{app=\"demo-app\"}"))
        assert r.status_code == 202, r.text
        assert {j["instance"] for j in s.runs()} == {"148ed193b95089"}
        assert [(a["runbook"], a["status"]) for a in r.json()["accepted"]] == [
            ("not-responding", "queued"), ("database", "queued")]
        # an alert the map does not name falls back to its annotation
        r = s.post(payload(alert(runbook="tls", alertname="Other"), group="g2"))
        assert [a["runbook"] for a in r.json()["accepted"]] == ["tls"]
    finally:
        s.close()
    for text, message in (("OpslibX: [reboot-everything]\n", "names reboot-everything"),
                          ("- just\n- a list\n", "not a mapping"),
                          ("OpslibX: {a: 1}\n", "must name one runbook")):
        bad = tmp_path / "bad.yml"
        bad.write_text(text)
        with pytest.raises(UsageError, match=message):
            load_runbook_map(bad)
    proc = opslib_cli("serve", "--runbook-map", str(bad), "--listen", "127.0.0.1:0",
                      env=clean_env(OPSLIB_REPORTS=str(env), OPSLIB_WEBHOOK_TOKEN=TOKEN))
    assert proc.returncode == 2 and "must name one runbook" in proc.stderr
