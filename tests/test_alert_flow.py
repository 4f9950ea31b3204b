"""From alert to evidence, end to end with the real servers from Debian's packages.

An exporter speaking Fly's metric names (``fly_instance_memory_*``, reference §3) crosses the
memory threshold → the rules ``python -m opslib alerts rules`` writes fire in a real
**Prometheus** → a real **Alertmanager** posts its webhook to ``python -m opslib serve`` →
the ``memory`` runbook runs live (papermill, a real kernel) against that same Prometheus →
the Slack and PagerDuty STAND-INS (strict, recording every request; tests/test_notify.py)
get one notification each; when the metric recovers, Alertmanager posts ``resolved`` and
PagerDuty gets the resolve for the same ``dedup_key``.

The Fly Machines and logs APIs cannot be reached from here: their STAND-INS
(tests/standins/) answer for the app's machines and logs.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from opslib.alerts import rules
from opslib.demo.world import machine
from opslib.evidence import verify_run
from tests.conftest import REPO, clean_env
from tests.servers import LocalHTTPServer, Reply, free_port
from tests.standins.fly_api import FlyApiStandIn
from tests.standins.fly_machines import FlyMachinesStandIn
from tests.test_notify import ROUTING_KEY, SLACK_PATH, PagerDutyStandIn, slack_stand_in

pytestmark = [pytest.mark.slow, pytest.mark.notebook]

APP = "shop"
A, B = "148ed193b95089", "3d8d9e1fe67e89"
FLY_TOKEN = "fo1_TestReadOnlyToken_abcdefghijklmnopqrstuvwxyz0123"
HOOK_TOKEN = "alert-flow-webhook-token-0123456789"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
GIB = 1024 ** 3


class FlyExporter(LocalHTTPServer):
    """``/metrics`` as Fly's metrics for two machines of APP; ``used`` sets A's memory use."""

    def __init__(self) -> None:
        self.used = {A: 0.40, B: 0.35}
        super().__init__(self._handle)

    def _handle(self, req) -> Reply:
        lines = []
        for name, value in (("fly_instance_memory_mem_total", lambda m: GIB),
                            ("fly_instance_memory_mem_available", lambda m: GIB * (1 - self.used[m])),
                            ("fly_instance_memory_mem_free", lambda m: GIB * (1 - self.used[m]) / 2)):
            lines.append(f"# TYPE {name} gauge")
            for mid, region in ((A, "iad"), (B, "ams")):
                lines.append(f'{name}{{app="{APP}",instance="{mid}",region="{region}"}} {value(mid):.0f}')
        return Reply(200, "\n".join(lines) + "\n",
                     headers={"content-type": "text/plain; version=0.0.4"})


def _start(cmd: list[str], ready_url: str, log: Path, env: dict | None = None) -> subprocess.Popen:
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{cmd[0]} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"{cmd[0]} not ready: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _until(what: str, check, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _firing(prom_url: str) -> set[str]:
    alerts = httpx.get(f"{prom_url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


@pytest.mark.first
def test_memory_alert_runs_the_runbook_and_tells_slack_and_pagerduty_then_resolves(tmp_path):
    assert Path(PROMETHEUS).exists() and Path(ALERTMANAGER).exists(), \
        "tests/system-deps.sh installs prometheus and prometheus-alertmanager"
    reports = tmp_path / "reports"
    prom_port, am_port, serve_port = free_port(), free_port(), free_port()
    prom_url, am_url = f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}"

    # the generated rules, as `make alerts app=shop` writes them; only `for:` is shortened
    # (5m/2m would make the test wait minutes — the expressions are what is under test)
    generated = rules(APP)
    for rule in generated["groups"][0]["rules"]:
        rule["for"] = "2s"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(generated))

    with FlyExporter() as exporter, slack_stand_in() as slack, PagerDutyStandIn() as pd, \
            FlyMachinesStandIn(FLY_TOKEN, {APP: [machine(A, name="a", region="iad"),
                                                 machine(B, name="b", region="ams")]}) as flaps, \
            FlyApiStandIn(FLY_TOKEN, {APP: {"logs": []}}) as api:
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "rules.yml")],
            "alerting": {"alertmanagers": [{"static_configs": [
                {"targets": [f"127.0.0.1:{am_port}"]}]}]},
            # Fly's own series carry instance = the machine id: keep it (honor_labels)
            "scrape_configs": [{"job_name": "fly", "honor_labels": True,
                                "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}],
        }))
        (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump({
            "route": {"receiver": "opslib", "group_by": ["app"], "group_wait": "1s",
                      "group_interval": "2s", "repeat_interval": "1h"},
            "receivers": [{"name": "opslib", "webhook_configs": [{
                "url": f"http://127.0.0.1:{serve_port}/alertmanager", "send_resolved": True,
                "http_config": {"authorization": {"credentials": HOOK_TOKEN}}}]}],
        }))
        serve_env = clean_env(
            OPSLIB_REPORTS=str(reports), OPSLIB_WEBHOOK_TOKEN=HOOK_TOKEN,
            FLY_API_TOKEN=FLY_TOKEN, FLY_FLAPS_BASE_URL=flaps.url, FLY_API_BASE_URL=api.url,
            FLY_PROMETHEUS_URL=prom_url,
            SLACK_WEBHOOK_URL=slack.url + SLACK_PATH,
            PAGERDUTY_ROUTING_KEY=ROUTING_KEY, PAGERDUTY_EVENTS_URL=pd.url)
        procs = []
        try:
            procs.append(_start([sys.executable, "-m", "opslib", "serve", "--listen",
                                 f"127.0.0.1:{serve_port}"],
                                f"http://127.0.0.1:{serve_port}/healthz", tmp_path / "serve.log",
                                env=serve_env))
            procs.append(_start([ALERTMANAGER, f"--config.file={tmp_path / 'alertmanager.yml'}",
                                 f"--storage.path={tmp_path / 'am-data'}",
                                 f"--web.listen-address=127.0.0.1:{am_port}",
                                 "--cluster.listen-address="],
                                f"{am_url}/-/ready", tmp_path / "alertmanager.log"))
            procs.append(_start([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                                f"{prom_url}/-/ready", tmp_path / "prometheus.log"))

            # below both thresholds: nothing fires, nothing runs
            _until("the first scrape", lambda: httpx.get(
                f"{prom_url}/api/v1/query", params={"query": "fly_instance_memory_mem_total"},
                timeout=5).json()["data"]["result"])
            time.sleep(4)
            assert _firing(prom_url) == set()

            exporter.used[A] = 0.97  # past the seed's critical 95 %
            assert _until("both memory alerts to fire", lambda: {
                "OpslibMemoryUsageWarning", "OpslibMemoryUsageCritical"} <= _firing(prom_url))
            runs = _until("serve to finish the memory run", lambda: [
                r for r in httpx.get(f"http://127.0.0.1:{serve_port}/runs", timeout=5).json()["runs"]
                if r["status"] in ("done", "failed")], timeout=180)
            assert [(r["runbook"], r["app"], r["status"]) for r in runs] == [("memory", APP, "done")], runs
            run = Path(runs[0]["evidence"])
            assert verify_run(run).ok
            found = json.loads((run / "findings.json").read_text())
            assert found["target"] == "live" and found["severity"] == "critical"
            # measured in the real Prometheus: A's memory, not a read error
            assert any(f["severity"] == "critical" and f.get("source") == "prometheus"
                       and A in json.dumps(f) for f in found["findings"]), found["findings"]
            # the runbook asked the real Prometheus, and changed nothing on Fly
            assert flaps.mutations == []

            # one notification each: the two alerts of the group ran the runbook once
            _until("the notifications", lambda: slack.requests and pd.requests, timeout=30)
            time.sleep(3)  # anything more would arrive now (group_interval 2s)
            assert len(slack.requests) == 1
            text = json.loads(slack.requests[0].body)["text"]
            assert "critical" in text.lower() and run.name in text
            triggers = [json.loads(r.body) for r in pd.requests]
            assert [t["event_action"] for t in triggers] == ["trigger"]
            dedup = triggers[0]["dedup_key"]
            assert found["incident"] in dedup

            # recovery: Prometheus resolves, Alertmanager posts resolved, PagerDuty resolves
            exporter.used[A] = 0.40
            _until("the page to be resolved", lambda: any(
                json.loads(r.body)["event_action"] == "resolve" for r in pd.requests), timeout=90)
            resolves = [json.loads(r.body) for r in pd.requests[1:]]
            assert {r["event_action"] for r in resolves} == {"resolve"}
            assert {r["dedup_key"] for r in resolves} == {dedup}
            statuses = [r["status"] for r in httpx.get(
                f"http://127.0.0.1:{serve_port}/runs", timeout=5).json()["runs"]]
            assert statuses.count("done") == 1 and "resolved" in statuses
            assert len(slack.requests) == 1  # a resolve is not a second run or message
            # no secret reached the evidence
            for path in run.rglob("*"):
                if path.is_file():
                    data = path.read_bytes()
                    assert FLY_TOKEN.encode() not in data and ROUTING_KEY.encode() not in data
                    assert HOOK_TOKEN.encode() not in data and SLACK_PATH.encode() not in data
        finally:
            for proc in reversed(procs):
                _stop(proc)
