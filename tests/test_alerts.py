"""The generated alerting rules, checked and unit-tested by Prometheus' own promtool
(Debian's `prometheus` package; tests/system-deps.sh installs it)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from opslib.alerts import RULES, rules
from tests.conftest import clean_env, opslib_cli

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
APP = "shop"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    assert Path(PROMTOOL).exists(), "promtool is missing: tests/system-deps.sh installs prometheus"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_the_rules_file_passes_promtool_check(tmp_path):
    out = tmp_path / "rules.yml"
    proc = opslib_cli("alerts", "rules", "--app", APP, "--out", str(out), env=clean_env())
    assert proc.returncode == 0, proc.stderr
    check = promtool("check", "rules", str(out), cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {2 * len(RULES)} rules found" in check.stdout


def _group(app: str, **kw) -> dict:
    return {r["alert"]: r for r in rules(app, **kw)["groups"][0]["rules"]}


def test_each_threshold_fires_its_alert_and_nothing_fires_below_it(tmp_path):
    """Series that cross the seed's memory and CPU thresholds, and edge traffic with errors:
    warning alone between the thresholds, warning and critical above both, nothing below."""
    by_name = _group(APP)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules(APP), sort_keys=False))

    def alert(name: str, **labels: str) -> dict:
        a = by_name[name]
        return {"exp_labels": {**a["labels"], **labels}, "exp_annotations": a["annotations"]}

    mem = lambda inst, avail: [  # noqa: E731 - two series per machine
        {"series": f'fly_instance_memory_mem_available{{app="{APP}",instance="{inst}"}}',
         "values": f"{avail}x30"},
        {"series": f'fly_instance_memory_mem_total{{app="{APP}",instance="{inst}"}}',
         "values": "1000x30"}]
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            *mem("m1", 200),   # 80 %: warning (> 70), not critical (> 90)
            *mem("m2", 50),    # 95 %: both
            *mem("m3", 500),   # 50 %: nothing
            # 2 % of requests are 5xx: error-rate warning (> 1 %), not critical (> 5 %)
            {"series": f'fly_edge_http_responses_count{{app="{APP}",status="200"}}',
             "values": "0+98x30"},
            {"series": f'fly_edge_http_responses_count{{app="{APP}",status="502"}}',
             "values": "0+2x30"},
        ],
        "alert_rule_test": [
            {"eval_time": "15m", "alertname": "OpslibMemoryUsageWarning",
             "exp_alerts": [alert("OpslibMemoryUsageWarning", instance="m1"),
                            alert("OpslibMemoryUsageWarning", instance="m2")]},
            {"eval_time": "15m", "alertname": "OpslibMemoryUsageCritical",
             "exp_alerts": [alert("OpslibMemoryUsageCritical", instance="m2")]},
            {"eval_time": "15m", "alertname": "OpslibErrorRateWarning",
             "exp_alerts": [alert("OpslibErrorRateWarning")]},
            {"eval_time": "15m", "alertname": "OpslibErrorRateCritical", "exp_alerts": []},
            # a warning waits its `for:` (5m): not yet firing 3 minutes in
            {"eval_time": "3m", "alertname": "OpslibMemoryUsageWarning", "exp_alerts": []},
        ]}]}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_overrides_are_honoured_and_bad_ones_refused(tmp_path):
    lowered = _group(APP, overrides={"memory_pct": [60, 85]})
    assert lowered["OpslibMemoryUsageWarning"]["expr"].endswith("> 60")
    assert lowered["OpslibMemoryUsageCritical"]["expr"].endswith("> 85")
    custom = _group(APP, promql={"memory_pct": 'my_mem_pct{app="{app}"}'})
    assert custom["OpslibMemoryUsageWarning"]["expr"] == f'(my_mem_pct{{app="{APP}"}}) > 70'
    for args, message in ((["-p", "thresholds={\"memory_pct\": [90, 50]}"], "above critical"),
                          (["-p", "nope=1"], "unknown parameter"),
                          (["--app", "Bad App"], "not a valid Fly app name")):
        argv = ["alerts", "rules", *(args if "--app" in args else ["--app", APP, *args])]
        proc = opslib_cli(*argv, env=clean_env())
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


@pytest.mark.parametrize("key", sorted(RULES))
def test_every_alert_names_its_runbook_and_escalation_level(key):
    runbook = RULES[key][2]
    for a in rules(APP)["groups"][0]["rules"]:
        if a["labels"]["runbook"] == runbook:
            assert a["annotations"]["runbook_command"] == f"make run issue={runbook} app={APP}"
            assert a["annotations"]["escalation_level"] in ("1", "2", "3")
